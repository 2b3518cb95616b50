"""The run command's promise, seen by an operator: ``citybrain up`` with its defaults (the
embedded Tansu broker and chDB, the simulator at x60) shows a dashboard in a real Chromium whose
data moves within a minute.

The test checks behaviour, not speed: each wait has a generous guard (``GUARD_S``) so that a slow
machine fails only when the screen never moves. The seconds from starting ``citybrain up`` to the
first KPI value on the screen and to the first change of the newest-data clock are measured,
printed (``-s``) and saved beside the screenshot, ``test-artifacts/up-live.json``: that is the
figure to compare with the 60 s promise.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, embedded_up_env, wait_until
from tests.dashboards.conftest import text_of

#: a guard against hanging, not a performance bound (measured: ~20 s to moving data)
GUARD_S = 180.0


def _value(driver: Any, css: str) -> str:
    try:
        txt = text_of(driver, css)
    except Exception:  # not rendered yet
        return ""
    return "" if txt in ("", "…", "—") else txt


@pytest.mark.embedded
@pytest.mark.browser
@pytest.mark.slow
def test_up_shows_live_changing_data_within_a_minute(tmp_path, spawn, browser: Any) -> None:
    env, port = embedded_up_env(tmp_path)
    t0 = time.monotonic()
    up = spawn("up", ["up"], env)  # the defaults of ./scripts/run.sh
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: "ready." in up.tail(), timeout=120, what="`citybrain up` ready",
               procs=[up])
    ready_s = time.monotonic() - t0
    browser.get(url)

    # a value on the screen: the newest-data clock and the grid-load tile (power feeders report
    # every 15 s of simulated time, so they are among the first readings stored)
    first = wait_until(lambda: _value(browser, "#newest-ts"), timeout=GUARD_S, what=(
        "the newest-data clock on the screen"), procs=[up])
    first_s = time.monotonic() - t0
    wait_until(lambda: _value(browser, "#kpi-grid"), timeout=GUARD_S,
               what="the grid-load KPI", procs=[up])
    kpi_s = time.monotonic() - t0
    grid = _value(browser, "#kpi-grid")

    # it moves: the newest reading's time advances and the screen follows without a reload
    changed = wait_until(lambda: (_value(browser, "#newest-ts") or first) != first,
                         timeout=GUARD_S, what="the newest-data clock to move", procs=[up])
    changed_s = time.monotonic() - t0
    assert changed
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "up-live.png"))
    timings = {"ready_s": round(ready_s, 1), "first_value_s": round(first_s, 1),
               "first_kpi_s": round(kpi_s, 1), "data_moved_s": round(changed_s, 1),
               "newest_first": first, "newest_later": _value(browser, "#newest-ts"),
               "grid_kpi": grid}
    (ARTIFACTS / "up-live.json").write_text(json.dumps(timings, indent=1))
    print("citybrain up, seconds from start:", timings)

    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(90) == 0, up.tail()
