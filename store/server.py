"""ClickHouse server backend (native protocol, clickhouse-driver, numpy columns)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from store.base import StoreError, StoreUnavailable, n_rows

#: a connection that answered this recently is not pinged before a query
TRUST_S = 10.0


class ServerStore:
    backend = "clickhouse"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        database: str,
        user: str = "default",
        password: str = "",
        connect_timeout: float = 5.0,
        send_receive_timeout: float = 300.0,
    ) -> None:
        self.database = database
        self._kw: dict[str, Any] = dict(
            host=host,
            port=port,
            user=user,
            password=password,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
            settings={"use_numpy": True},
        )
        self._lock = threading.Lock()  # a clickhouse-driver Client is not thread-safe
        self._client = Client(database="default", **self._kw)
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._client = self._new_client()

    def __repr__(self) -> str:
        return f"ServerStore({self._kw['host']}:{self._kw['port']}/{self.database})"

    def _new_client(self) -> Client:
        """A client whose connection skips clickhouse-driver's ping before a query while the
        connection answered within the last :data:`TRUST_S` seconds (a ping is a round trip
        per query; the screen runs a dozen queries per refresh). A connection that broke
        meanwhile fails the query with a network error: :meth:`query` then reconnects and
        asks again; commands and inserts always ping first, so they are never sent twice."""
        client = Client(database=self.database, **self._kw)
        conn = client.connection
        ping = conn.ping

        def maybe_ping() -> Any:
            if self._trusted and time.monotonic() - self._last_ok < TRUST_S:
                return True
            return ping()

        conn.ping = maybe_ping  # type: ignore[method-assign]
        return client

    _trusted = False
    _last_ok = 0.0

    def _run(self, fn: Any, *args: Any, _retry: bool = False, **kw: Any) -> Any:
        """``fn`` under the lock; ``_retry``: a read that fails with a network error (a
        connection that broke while idle) is asked once more on a fresh connection."""
        with self._lock:
            self._trusted = _retry
            attempts = 2 if _retry else 1
            try:
                for attempt in range(1, attempts + 1):
                    try:
                        out = fn(*args, **kw)
                        self._last_ok = time.monotonic()
                        return out
                    except ch_errors.ServerException as exc:
                        raise StoreError(_first_line(exc.message)) from None
                    except (ch_errors.NetworkError, ch_errors.SocketTimeoutError, OSError,
                            EOFError) as exc:
                        self._client.disconnect()
                        self._last_ok = 0.0
                        if attempt == attempts:
                            raise StoreUnavailable(f"{self!r}: {exc}") from None
                raise AssertionError("unreachable")
            finally:
                self._trusted = False

    def command(self, sql: str) -> None:
        self._run(self._client.execute, sql)

    def query(self, sql: str, *, settings: dict[str, int | str] | None = None) -> pd.DataFrame:
        data, types = self._run(
            self._client.execute,
            sql,
            with_column_types=True,
            columnar=True,
            settings={"use_numpy": True, **(settings or {})},
            _retry=True,
        )
        names = [name for name, _ in types]
        if not data:
            return pd.DataFrame({n: [] for n in names})
        # copy=False: the columns are fresh arrays; pandas would otherwise copy every numeric
        # column into one block (half the cost of a wide window's frame)
        return pd.DataFrame({n: _column(col) for n, col in zip(names, data, strict=True)},
                            copy=False)

    def insert(self, table: str, columns: dict[str, np.ndarray]) -> int:
        n = n_rows(columns)
        if n == 0:
            return 0
        cols = list(columns)
        values = []
        for c in cols:
            arr = columns[c]
            if arr.dtype.kind == "f" and np.isnan(arr).any():
                # clickhouse-driver's numpy path has no NULL mask: send Nullable columns as
                # objects with None
                obj = arr.astype(object)
                obj[np.isnan(arr)] = None
                arr = obj
            values.append(arr)
        self._run(
            self._client.execute,
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES",
            values,
            columnar=True,
        )
        return n

    def version(self) -> str:
        return str(self.query("SELECT version() AS v")["v"].iloc[0])

    def close(self) -> None:
        self._client.disconnect()


def _column(col: Any) -> np.ndarray:
    """A 1-d column; Array, Tuple and other generic columns become object arrays of values."""
    if isinstance(col, np.ndarray) and col.ndim == 1:
        return col
    arr = np.asarray(col) if not isinstance(col, (list, tuple)) else None
    if arr is not None and arr.ndim == 1:
        return arr
    out = np.empty(len(col), dtype=object)
    for i, v in enumerate(col):
        out[i] = v
    return out


class _QuietGenericColumns(logging.Filter):
    """clickhouse-driver logs a warning whenever a type (Array, Nullable(Nothing)…) has no
    numpy reader; the generic reader it falls back to is what we want."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NumPy support is not implemented" not in record.getMessage()


for _name in ("clickhouse_driver.columns.numpy.service", "clickhouse_driver.columns.service"):
    logging.getLogger(_name).addFilter(_QuietGenericColumns())


def _first_line(message: str) -> str:
    text = message.split("Stack trace:")[0].strip()
    return text.rstrip(".")
