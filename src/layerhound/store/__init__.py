"""Results kept between runs.

- ``db``: one seam over SQLite and PostgreSQL; ``schema``: the tables, as migrations.
- ``parts`` + ``layer_rows``: a layer's result per detector, shared by the cache and the store.
- ``cache``: the scan's per-layer cache (SQLite in the user's cache directory).
- ``results``: the crawl's results store (repositories, tags, images, verdicts, lineage).
- ``serialize``: the JSON codec derived from the model's type hints.
"""

from __future__ import annotations

from layerhound.store.cache import CACHE_FILE, CacheError, LayerCache, default_cache_dir, open_cache
from layerhound.store.serialize import UndecodableResult, UnstorableResult, dump_layer, load_layer

__all__ = [
    "CACHE_FILE",
    "CacheError",
    "LayerCache",
    "UndecodableResult",
    "UnstorableResult",
    "default_cache_dir",
    "dump_layer",
    "load_layer",
    "open_cache",
]
