"""The screen on real services: a seeded ClickHouse 18.16 database, the app served by werkzeug
on 127.0.0.1, and a real headless Chromium driven by Selenium.

(dash.testing's ``dash_duo`` works with this Chromium/Selenium pair too, but it needs command
line flags and serves on a fixed port; a werkzeug server of our own also runs the hub's API.)
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, REQUIRED, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: bad_day: a pollution episode (D05 and neighbours), the 08:20 crash in D02, random faults
SEED_START = 1767830400 + 470 * 60  # 2026-01-08 07:50 UTC
SEED_SPAN = 3600


@pytest.fixture(scope="module")
def seeded_db(clickhouse_hostport: str) -> Iterator[tuple[Any, str, Any]]:
    """(store, database, SeedInfo): an hour of the default city (5,000 sensors) plus derived
    rows, on the ClickHouse server."""
    from config.city import load_city
    from dashboards.seed import seed_store
    from store.schema import apply_schema
    from store.server import ServerStore

    host, _, port = clickhouse_hostport.rpartition(":")
    db = "t" + uuid.uuid4().hex[:10]
    store = ServerStore(host=host, port=int(port), database=db)
    apply_schema(store)
    info = seed_store(store, load_city(), scenario="bad_day", start=SEED_START,
                      duration_s=SEED_SPAN)
    yield store, db, info
    store.command(f"DROP DATABASE IF EXISTS {db}")
    store.close()


class Served:
    def __init__(self, url: str, app: Any, store: Any, db: str, info: Any) -> None:
        self.url, self.app, self.store, self.db, self.info = url, app, store, db, info


def serve(app: Any, store: Any) -> tuple[str, Callable[[], None]]:
    from werkzeug.serving import make_server

    from citybrain.hub import add_api

    add_api(app.server, store)
    port = free_port()
    srv = make_server("127.0.0.1", port, app.server, threaded=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    return f"http://127.0.0.1:{port}", srv.shutdown


@pytest.fixture(scope="module")
def served(seeded_db: tuple[Any, str, Any], clickhouse_hostport: str,
           kafka_bootstrap: str) -> Iterator[Served]:
    from config.settings import load_settings
    from dashboards.app import create_app
    from streams.topics import ensure_topics

    store, db, info = seeded_db
    settings = load_settings(
        store="clickhouse", clickhouse_url=f"clickhouse://{clickhouse_hostport}/{db}",
        dashboard_refresh_s=1.0, dashboard_stale_s=3600.0,
        # operator actions go to this test's own actions topic on the real broker
        kafka_bootstrap=kafka_bootstrap, topic_prefix=db,
    )
    ensure_topics(settings)
    app = create_app(store, settings)
    url, stop = serve(app, store)
    yield Served(url, app, store, db, info)
    stop()


def chrome_options() -> Any:
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage", "--disable-default-apps", "--disable-extensions",
        "--window-size=1920,1080", f"--user-data-dir={tempfile.mkdtemp(prefix='cb-chrome-')}",
        # WebGL (Scattergl) without a GPU: Chromium's software renderer
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return opts


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        msg = "Debian's chromium and chromium-driver are not installed"
        if REQUIRED:  # under scripts/test.sh a missing browser is a failure, never a skip
            pytest.fail(msg + " although scripts/install.sh --test should have installed them")
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chrome_options())
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver: Any, check: Callable[[], Any], *, timeout: float = 30,
             what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            out = check()
            if out:
                return out
        except Exception as exc:  # the element may not be there yet
            last = exc
        time.sleep(0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "dashboard-timeout.png"))
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)
