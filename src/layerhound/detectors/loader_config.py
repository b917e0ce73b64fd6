"""The dynamic loader's configuration files, recorded as facts.

``/etc/ld.so.cache`` is what ld.so actually consults (after LD_LIBRARY_PATH and
DT_RUNPATH, before its default directories); ``/etc/ld.so.conf`` and its
includes are what ldconfig builds that cache from; ``/etc/ld.so.preload``
forces libraries into every process. Reachability replays the loader's
search with these, so a library copied in without ldconfig, or a cache that
still points at an older file, is judged the way the loader would judge it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from layerhound.detectors.base import Detector, Interest
from layerhound.model import Entry, Fact, Finding

COLLECTOR = "loader-config"
LD_SO_CONF = "/etc/ld.so.conf"
LD_SO_CONF_DIR = "/etc/ld.so.conf.d/"
LD_SO_PRELOAD = "/etc/ld.so.preload"
LD_SO_CACHE = "/etc/ld.so.cache"

NEW_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
OLD_CACHE_MAGIC = b"ld.so-1.7.0"
NEW_HEADER = struct.Struct("<20sII B3x I 12x")  # magic+version, nlibs, len_strings, flags, extension offset
NEW_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap
OLD_ENTRY = struct.Struct("<iII")
MAX_CACHE_ENTRIES = 200_000
MAX_CACHE_STRING = 4096
"""Longest soname or path read (PATH_MAX): a search for a NUL stops there, not at the end of the file."""

# ld.so.cache flag values (glibc's ldconfig.h): the ELF class/ABI of the entry.
CACHE_ARCH = {0x0303: "x86_64", 0x0a03: "aarch64", 0x0003: "i386"}


class CacheFormatError(ValueError):
    """ld.so.cache is truncated or inconsistent."""


def parse_ld_so_cache(data: bytes) -> list[tuple[str, str, str]]:
    """(soname, path, arch) entries of a glibc ld.so.cache, in file order."""
    start = 0
    if data.startswith(OLD_CACHE_MAGIC):
        # The old format precedes the new one in compat caches; skip its entries.
        if len(data) < 16:
            raise CacheFormatError("truncated ld.so.cache (old format) header")
        (count,) = struct.unpack_from("<I", data, 12)
        start = 16 + count * OLD_ENTRY.size
        start = (start + 7) & ~7
    if data[start : start + len(NEW_CACHE_MAGIC)] != NEW_CACHE_MAGIC:
        raise CacheFormatError("not a glibc ld.so.cache (new format)")
    if start + NEW_HEADER.size > len(data):
        raise CacheFormatError("truncated ld.so.cache header")
    _, nlibs, _, _, _ = NEW_HEADER.unpack_from(data, start)
    if nlibs > MAX_CACHE_ENTRIES or start + NEW_HEADER.size + nlibs * NEW_ENTRY.size > len(data):
        raise CacheFormatError(f"ld.so.cache claims {nlibs} entries that do not fit the file")

    def string(offset: int) -> str:
        stop = data.find(b"\0", offset, offset + MAX_CACHE_STRING)
        if offset >= len(data) or stop < 0:
            raise CacheFormatError(f"ld.so.cache string past end of file or over {MAX_CACHE_STRING} bytes")
        return data[offset:stop].decode("utf-8", "replace")

    entries = []
    for index in range(nlibs):
        flags, key, value, _, _ = NEW_ENTRY.unpack_from(data, start + NEW_HEADER.size + index * NEW_ENTRY.size)
        entries.append((string(key), string(value), CACHE_ARCH.get(flags & 0xFFFF, hex(flags & 0xFFFF))))
    return entries


def parse_ld_so_conf(text: str) -> list[tuple[str, str]]:
    """("include", glob) and ("dir", path) directives, in order; comments dropped."""
    directives: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include ") or line.startswith("include\t"):
            directives.extend(("include", part) for part in line.split()[1:])
        elif line.startswith("hwcap "):
            continue
        else:
            directives.extend(("dir", part) for part in line.replace(",", " ").replace(":", " ").split())
    return directives


def parse_preload(text: str) -> list[str]:
    """ld.so.preload: names or paths separated by white space or colons."""
    return [p for p in text.replace(":", " ").split() if p and not p.startswith("#")]


class LoaderConfigFacts(Detector):
    """Records ld.so.conf (+ includes), ld.so.preload and ld.so.cache."""

    name = COLLECTOR
    version = 1
    max_size = 64 * 1024 * 1024

    def interest(self) -> Interest:
        return Interest(paths=frozenset({LD_SO_CONF, LD_SO_PRELOAD, LD_SO_CACHE}), prefixes=(LD_SO_CONF_DIR,))

    def wants(self, entry: Entry, head: bytes) -> bool:
        path = entry.path
        return path in (LD_SO_CONF, LD_SO_PRELOAD, LD_SO_CACHE) or (
            path.startswith(LD_SO_CONF_DIR) and "/" not in path[len(LD_SO_CONF_DIR) :]
        )

    def rule_tables(self) -> dict[str, Any]:
        return {"cache_arch": {hex(k): v for k, v in CACHE_ARCH.items()}}

    def inspect(self, entry: Entry, data: bytes) -> Iterable[Finding | Fact]:
        if entry.path == LD_SO_CACHE:
            yield Fact(COLLECTOR, entry.path, {"cache": [list(e) for e in parse_ld_so_cache(data)]})
        elif entry.path == LD_SO_PRELOAD:
            yield Fact(COLLECTOR, entry.path, {"preload": parse_preload(data.decode("utf-8", "replace"))})
        else:
            directives = parse_ld_so_conf(data.decode("utf-8", "replace"))
            yield Fact(COLLECTOR, entry.path, {"conf": [list(d) for d in directives]})
