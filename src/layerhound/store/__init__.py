"""Results kept between scans: the per-layer cache (``cache``) and its JSON codec (``serialize``)."""

from __future__ import annotations

from layerhound.store.cache import CACHE_FILE, CacheError, LayerCache, cache_version, default_cache_dir, open_cache
from layerhound.store.serialize import UndecodableResult, UnstorableResult, dump_layer, load_layer

__all__ = [
    "CACHE_FILE",
    "CacheError",
    "LayerCache",
    "UndecodableResult",
    "UnstorableResult",
    "cache_version",
    "default_cache_dir",
    "dump_layer",
    "load_layer",
    "open_cache",
]
