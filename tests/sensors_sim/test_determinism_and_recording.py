from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from models.frame import encode
from sensors_sim.clock import ManualClock
from sensors_sim.engine import Simulator
from sensors_sim.errors import RecordingError
from sensors_sim.labels import Label
from sensors_sim.publisher import Publisher, run_live
from sensors_sim.recording import Recording, checkpoint_path, labels_path, record, replay
from tests.sensors_sim.helpers import city, scenario


def digest(sim: Simulator) -> str:
    h = hashlib.sha256()
    for t, frames in sim.ticks():
        h.update(repr(t).encode())
        for f in frames:
            h.update(encode(f))
    for lab in sim.labels:
        h.update(lab.to_json())
    return h.hexdigest()


def sim(name: str = "bad_day", seed: int = 1, duration: float = 3 * 3600, **kw: Any) -> Simulator:
    return Simulator(city(), scenario(name), seed=seed, duration=duration, **kw)


def test_same_scenario_and_seed_are_byte_identical() -> None:
    assert digest(sim(seed=5)) == digest(sim(seed=5))
    assert digest(sim(seed=5)) != digest(sim(seed=6))


def test_a_longer_run_starts_with_the_shorter_one() -> None:
    short = [encode(f) for fs in sim(duration=1800).steps() for f in fs]
    long = [encode(f) for fs in sim(duration=7200).steps() for f in fs]
    assert long[: len(short)] == short


def test_the_default_city_is_deterministic_too() -> None:
    from config.city import load_city

    a = Simulator(load_city(), scenario("rush_hour_crash"), seed=2, duration=900)
    b = Simulator(load_city(), scenario("rush_hour_crash"), seed=2, duration=900)
    assert digest(a) == digest(b)


def test_record_replays_to_the_same_frames(tmp_path: Path) -> None:
    path = tmp_path / "run.cbr"
    stats = record(sim(duration=3600), path)
    rec = Recording(path)
    assert rec.header["scenario"] == "bad_day" and rec.header["seed"] == 1
    assert rec.labels == sim(duration=3600).labels
    expected = [(t, [encode(f) for f in fs]) for t, fs in sim(duration=3600).ticks()]
    got = [(tick.t, [v for _, _, _, v in tick.frames]) for tick in rec.ticks()]
    assert got == expected
    assert stats.ticks == len(expected) and stats.frames == sum(len(x[1]) for x in expected)
    decoded = [f for _, fs in rec.frames() for f in fs]
    assert sum(len(f) for f in decoded) == stats.readings
    assert rec.trailer == {"ticks": stats.ticks, "frames": stats.frames, "readings": stats.readings}
    side = [Label.from_json(line) for line in labels_path(path).read_bytes().splitlines()]
    assert side == rec.labels
    # byte-identical recordings
    path2 = tmp_path / "run2.cbr"
    record(sim(duration=3600), path2)
    assert path.read_bytes() == path2.read_bytes()
    assert stats.file_bytes < stats.raw_bytes / 4  # compressed


def test_bad_recordings_fail_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cbr"
    bad.write_bytes(b"not zstd at all")
    with pytest.raises(RecordingError, match=r"bad\.cbr"):
        Recording(bad)
    with pytest.raises(RecordingError, match="no such recording"):
        Recording(tmp_path / "missing.cbr")


class FakeProducer:
    """Collects what a KafkaProducer would send (the Kafka path is tested in test_publish_kafka)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.flushes = 0

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float | None = None) -> None:
        pass


def settings() -> Any:
    from config.settings import load_settings

    return load_settings(topic_prefix="t")


def test_run_live_paces_event_time_and_publishes_labels_first() -> None:
    prod = FakeProducer()
    pub = Publisher(settings(), producer=prod)
    clock = ManualClock()
    s = sim("rush_hour_crash", duration=3 * 3600, start=None)
    stats = run_live(s, pub, speed=60.0, clock=clock)
    # 3 h of event time at x60 = 3 minutes of (fake) wall time
    assert clock.monotonic() == pytest.approx((s.end - s.start - s.tick_s) / 60.0, abs=0.3)
    topics = {t for t, _, _ in prod.sent}
    assert topics == {
        "t.readings.traffic",
        "t.readings.environment",
        "t.readings.utility",
        "t.groundtruth",
    }
    gt = [i for i, (t, _, _) in enumerate(prod.sent) if t == "t.groundtruth"]
    assert stats.labels == len(gt) == 1
    lab = Label.from_json(prod.sent[gt[0]][2] or b"")
    assert lab == s.labels[0]
    # keys are gateway ids
    assert all(
        k and k.decode() in s.city.gateway_index for t, k, _ in prod.sent if t != "t.groundtruth"
    )
    assert prod.flushes >= 1


def test_run_live_stops_when_asked() -> None:
    prod = FakeProducer()
    pub = Publisher(settings(), producer=prod)
    stop = threading.Event()
    n = 0

    def on_tick(t: float, done: int) -> None:
        nonlocal n
        n = done
        if done == 10:
            stop.set()

    run_live(
        sim("normal_day", duration=86400),
        pub,
        speed=0,
        clock=ManualClock(),
        stop=stop,
        on_tick=on_tick,
    )
    assert n == 10 and prod.flushes >= 1


def test_replay_publishes_the_recording_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "run.cbr"
    rstats = record(sim(duration=1800), path)
    prod = FakeProducer()
    stop = threading.Event()
    clock = ManualClock()
    seen = 0

    class Stopper(FakeProducer):
        def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
            nonlocal seen
            super().send(topic, value, key)
            seen += 1
            if seen == 500:
                stop.set()

    first = Stopper()
    _, done1 = replay(
        path,
        Publisher(settings(), producer=first),
        speed=0,
        clock=clock,
        stop=stop,
        checkpoint_every_s=0.0,
    )
    assert 0 < done1 < rstats.ticks
    assert checkpoint_path(path).exists()
    _, done2 = replay(path, Publisher(settings(), producer=prod), speed=0, clock=clock, resume=True)
    assert done2 == rstats.ticks
    frames_all = [v for t, _, v in first.sent + prod.sent if t != "t.groundtruth"]
    expected = [encode(f) for fs in sim(duration=1800).steps() for f in fs]
    # nothing lost; what was sent after the last checkpoint may be sent twice (seq dedups it)
    assert set(frames_all) == set(expected)
    assert (
        frames_all[-len(prod.sent) + sum(t == "t.groundtruth" for t, _, _ in prod.sent) :]
        == expected[-len([1 for t, _, _ in prod.sent if t != "t.groundtruth"]) :]
    )


def test_replay_at_speed_uses_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "run.cbr"
    record(sim(duration=1800), path)
    ticks = [tick.t for tick in Recording(path).ticks()]
    clock = ManualClock()
    replay(path, Publisher(settings(), producer=FakeProducer()), speed=10.0, clock=clock)
    assert clock.monotonic() == pytest.approx((ticks[-1] - ticks[0]) / 10.0, abs=0.3)
