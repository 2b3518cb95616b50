"""Embedded backend: ClickHouse in-process through chDB.

chDB allows one process per data directory, so in the embedded mode exactly one process (the
hub) owns the store; everyone else goes through the hub's HTTP API.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from store.base import StoreError, n_rows


class EmbeddedStore:
    backend = "chdb"

    def __init__(self, *, path: str | Path, database: str = "citybrain") -> None:
        from chdb import session

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self._lock = threading.Lock()
        try:
            self._session = session.Session(str(self.path))
        except Exception as exc:  # chDB raises plain RuntimeError
            raise StoreError(f"cannot open chDB at {self.path}: {exc}") from None
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        self.command(f"USE {database}")

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.path}/{self.database})"

    def _q(self, sql: str, fmt: str = "CSV") -> object:
        with self._lock:
            try:
                return self._session.query(sql, fmt)
            except Exception as exc:
                raise StoreError(_clean(str(exc))) from None

    def command(self, sql: str) -> None:
        self._q(sql)

    def query(self, sql: str, *, settings: dict[str, int | str] | None = None) -> pd.DataFrame:
        if settings:
            sql = f"{sql.rstrip().rstrip(';')} SETTINGS " + ", ".join(
                f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in settings.items()
            )
        df = self._q(sql, "DataFrame")
        assert isinstance(df, pd.DataFrame)
        for col in df.columns:  # same shape as the server backend: naive UTC timestamps
            if isinstance(df[col].dtype, pd.DatetimeTZDtype):
                df[col] = df[col].dt.tz_convert("UTC").dt.tz_localize(None)
        return df

    def insert(self, table: str, columns: dict[str, np.ndarray]) -> int:
        n = n_rows(columns)
        if n == 0:
            return 0
        arrays = {}
        for name, arr in columns.items():
            if arr.dtype.kind == "f":
                nan = np.isnan(arr)
                arrays[name] = pa.array(arr, mask=nan if nan.any() else None)
            elif arr.dtype.kind == "M":
                arrays[name] = pa.array(arr.astype("datetime64[s]").astype(np.int64), pa.int64())
            elif arr.dtype.kind == "O" and len(arr) and isinstance(arr[0], (list, tuple)):
                arrays[name] = pa.array([list(v) for v in arr], pa.list_(pa.string()))
            elif arr.dtype.kind == "O":
                arrays[name] = pa.array(arr.tolist(), pa.string())
            else:
                arrays[name] = pa.array(arr)
        batch = pa.table(arrays)  # noqa: F841 - read by chDB's Python() table function
        select = ", ".join(
            f"toDateTime({c}, 'UTC')" if columns[c].dtype.kind == "M" else c for c in columns
        )
        self._q(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM Python(batch)")
        return n

    def version(self) -> str:
        return str(self.query("SELECT version() AS v")["v"].iloc[0])

    def close(self) -> None:
        with self._lock:
            self._session.close()


def _clean(message: str) -> str:
    return message.split("Stack trace")[0].strip()
