"""ClickHouse access: schema, batched writes and the queries the screen and CLI use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.base import Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["Store", "StoreError", "StoreUnavailable", "open_store"]


def open_store(settings: Settings, *, apply: bool = True) -> Store:
    """Open the configured backend and (by default) bring its schema up to date."""
    store: Store
    if settings.store == "clickhouse":
        from store.server import ServerStore

        ch = settings.clickhouse
        store = ServerStore(
            host=ch["host"], port=ch["port"], database=ch["database"],
            user=ch["user"], password=ch["password"],
        )
    else:
        from store.embedded import EmbeddedStore

        store = EmbeddedStore(path=settings.chdb_path)
    if apply:
        from config.city import load_city
        from store.dimensions import load_dimensions
        from store.retention import RetentionPolicy, apply_ttl
        from store.schema import apply_schema

        apply_schema(store)
        load_dimensions(store, load_city(settings.city_file))
        apply_ttl(store, RetentionPolicy.from_settings(settings))
    return store
