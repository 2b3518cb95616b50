"""Hypothesis strategies for bad input: one per dead-letter class the worker must recognise.

Each generated message carries a random ``x`` field (decoders ignore unknown fields) so that
messages are distinct and can be matched to their dead letters by their bytes.
"""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

from streams.processor import _NON_FINITE

GOOD_TEMPLATE = {
    "v": 1, "gateway": "TR-G001", "domain": "traffic", "ts": [1767571200.0],
    "sensor_id": ["TR-S0001"], "seq": [1],
    "metrics": {"flow_vph": [1.0], "speed_kmh": [1.0], "occupancy_pct": [1.0]},
}
_DROP = object()
_salt = st.integers(0, 2**53)
_text = st.text(min_size=1, max_size=12)


def _numeric(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


# models.frame.decode accepts numeric *strings* in number columns (numpy converts "1" to 1.0):
# reported to the wire-format owner; generate the non-numeric ones here
_word = _text.filter(lambda x: not _numeric(x))


def _with(salt: int, **changes: object) -> bytes:
    d = orjson.loads(orjson.dumps(GOOD_TEMPLATE))
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k, None)
        else:
            d[k] = v
    d["x"] = salt
    return orjson.dumps(d)


def _is_json(b: bytes) -> bool:
    try:
        orjson.loads(b)
    except orjson.JSONDecodeError:
        return False
    return True


malformed_json = st.binary(min_size=1, max_size=64).filter(
    lambda b: not _is_json(b) and not _NON_FINITE.search(b)
).map(lambda b: (b, "malformed_json"))
unknown_version = st.tuples(
    st.one_of(st.integers(-(2**63), 2**63 - 1).filter(lambda v: v != 1), _text, st.none()), _salt
).map(lambda a: (_with(a[1], v=a[0]), "unknown_version"))
wrong_type = st.one_of(
    st.tuples(st.lists(_word, min_size=1, max_size=3), _salt).map(
        lambda a: _with(a[1], ts=a[0])),
    st.tuples(_word, _salt).map(lambda a: _with(a[1], seq=a[0])),
    st.tuples(st.integers(-(2**63), 2**63 - 1), _salt).map(
        lambda a: _with(a[1], sensor_id=[a[0]])),
    st.lists(st.integers(-1000, 1000), max_size=5).map(orjson.dumps),
).map(lambda b: (b, "wrong_type"))
# JSON has no NaN or infinity; producers that write them anyway (Python's json module writes
# NaN and Infinity, 1e999 overflows) get reason "non_finite"
non_finite = st.tuples(
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"]), _salt
).map(lambda a: (_with(a[1]).replace(b'"flow_vph":[1.0]', b'"flow_vph":[' + a[0] + b"]"),
                 "non_finite"))
unknown_gateway = st.tuples(_text.filter(lambda g: not g.startswith("TR-G0")), _salt).map(
    lambda a: (_with(a[1], gateway=a[0]), "unknown_gateway")
)
unknown_sensor = st.tuples(_text.filter(lambda s: not s.startswith("TR-S")), _salt).map(
    lambda a: (_with(a[1], sensor_id=[a[0]]), "unknown_sensor")
)
ragged = st.tuples(st.integers(2, 5), _salt).map(
    lambda a: (_with(a[1], ts=[1767571200.0] * a[0]), "ragged")
)
missing_field = st.tuples(
    st.sampled_from(["gateway", "ts", "sensor_id", "seq", "metrics"]), _salt
).map(lambda a: (_with(a[1], **{a[0]: _DROP}), "missing_field"))
oversized = st.tuples(st.integers(0, 1000), _salt).map(
    lambda a: (_with(a[1], pad="x" * (5000 + a[0])), "oversized")
)

CLASSES = {
    "malformed_json": malformed_json, "unknown_version": unknown_version,
    "wrong_type": wrong_type, "non_finite": non_finite, "unknown_gateway": unknown_gateway,
    "unknown_sensor": unknown_sensor, "ragged": ragged, "missing_field": missing_field,
    "oversized": oversized,
}
REASONS = set(CLASSES)
#: the worker's max_frame_bytes in the tests that use ``oversized``
MAX_FRAME_BYTES = 4096


def bad_messages(n: int) -> st.SearchStrategy[list[tuple[bytes, str]]]:
    """``n`` distinct bad messages, every class about equally often."""
    per = n // len(CLASSES)
    sizes = [per + (1 if i < n - per * len(CLASSES) else 0) for i in range(len(CLASSES))]
    return st.tuples(*[
        st.lists(s, min_size=k, max_size=k, unique_by=lambda m: m[0])
        for s, k in zip(CLASSES.values(), sizes, strict=True)
    ]).map(lambda parts: [m for p in parts for m in p]).filter(
        lambda ms: len({m[0] for m in ms}) == len(ms))


def draw_bad_messages(total: int, per_example: int = 250) -> list[tuple[bytes, str]]:
    """``total`` generated bad messages, every class about equally often, for tests that push
    them through a real pipeline once.

    One hypothesis example cannot hold thousands of such values (its choice buffer overruns
    at ~2,000), so this runs a generate-only hypothesis test that keeps every example's
    ``per_example`` messages until ``total`` are drawn. Messages are distinct within an
    example; a repeat across examples is another message at another offset all the same.
    """
    from hypothesis import HealthCheck, Phase, given, settings

    drawn: list[tuple[bytes, str]] = []
    examples = -(-total // per_example)

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(bad=bad_messages(per_example))
    def keep(bad: list[tuple[bytes, str]]) -> None:
        drawn.extend(bad)

    for _ in range(10):  # hypothesis may stop short of max_examples; ask again
        keep()
        if len(drawn) >= total:
            return drawn[:total]
    raise AssertionError(f"hypothesis drew only {len(drawn)} of {total} bad messages")
