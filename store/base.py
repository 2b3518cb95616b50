"""The store protocol: the ClickHouse operations citybrain needs, over two backends.

``server.ServerStore`` speaks ClickHouse's native protocol (clickhouse-driver) to a server;
``embedded.EmbeddedStore`` runs ClickHouse in-process (chDB). Both take the same SQL (written
to run on ClickHouse 18.16 and 26.x) and the same columnar numpy inserts.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd


class StoreError(Exception):
    """A store operation failed; the message carries ClickHouse's own error text."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (retry later)."""


class Store(Protocol):
    backend: str
    database: str

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, INSERT … SELECT, OPTIMIZE)."""

    def query(self, sql: str, *, settings: dict[str, int | str] | None = None) -> pd.DataFrame:
        """Run a SELECT and return its result as a DataFrame."""

    def insert(self, table: str, columns: dict[str, np.ndarray]) -> int:
        """Insert equal-length columns (``ts``-like columns as ``datetime64[s]``; NaN in a
        float column means NULL for Nullable columns). Returns the number of rows."""

    def version(self) -> str:
        """The ClickHouse version string, e.g. ``18.16.1`` or ``26.9.2.1``."""

    def close(self) -> None: ...


def n_rows(columns: dict[str, np.ndarray]) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise StoreError(f"ragged insert: column lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())
