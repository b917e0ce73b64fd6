"""The user's own YARA rules (``--rules PATH``), run by YARA-X over the files of every layer.

Why: the next implant will have its own byte patterns before layerhound has a detector for
them, and a security team usually has rules of its own. They run on the same bytes the
built-in detectors see, inside archives and compressed files too, and their matches are
findings like any other (kind ``signature``; rule ``yara:NAMESPACE.RULE``; the rule's name,
namespace, tags and meta in the evidence).

Which files: the candidates the built-in detectors judge (ELF files, scripts), or with
``--rules-all-files`` every regular file up to ``ALL_FILES_MAX`` bytes. A rule's meta
``layerhound_indicates`` (``implant``, ``payload`` or ``source``) says what a match means for
the verdict; without it a match in a loadable ELF file is an implant, anywhere else payload.

The rules' sha256 is part of this detector's rule tables, so of every cache and store key: a
changed rule file re-judges every layer, and results under other rules are never served.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerhound.detectors.base import ELF_MAGIC, HOLD_MAX, Detector, Interest, is_elf
from layerhound.errors import UsageError
from layerhound.model import Entry, Finding, Indicates, Kind

RULE_SUFFIXES = (".yar", ".yara")
"""Files of a rules directory that are read; the rest are not."""
ALL_FILES_MAX = HOLD_MAX
"""The largest file ``--rules-all-files`` scans (YARA-X scans a whole file, so it is held)."""
SCAN_TIMEOUT_S = 10
"""Seconds one file may take under the user's rules; a slower scan is a detector error for that file."""
SCRIPT_HEAD = b"#!"
INDICATES_META = "layerhound_indicates"
_INDICATES = {"implant": Indicates.IMPLANT, "payload": Indicates.PAYLOAD, "source": Indicates.SOURCE}
_LOADABLE = (2, 3)  # ET_EXEC, ET_DYN


@dataclass(frozen=True)
class RuleSources:
    """The rule files' text, by path, in a fixed order: what is compiled, hashed and sent to workers."""

    files: tuple[tuple[str, str], ...]
    all_files: bool = False

    @functools.cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for path, text in self.files:
            digest.update(f"{len(path)}:{path}:{len(text)}:".encode() + text.encode())
        return digest.hexdigest()


def load_rules(path: Path, all_files: bool = False) -> RuleSources:
    """Read and compile ``path`` (a rule file, or a directory of ``*.yar``/``*.yara``, recursively).

    A rule that does not compile is a ``UsageError`` naming the file and line; so is a path
    that holds no rule file. Compiled here once, so the error comes before any image is pulled.
    """
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)
        if not files:
            raise UsageError(f"--rules {path}: no *.yar or *.yara file in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise UsageError(f"--rules {path}: no such file or directory")
    sources = []
    for file in files:
        try:
            sources.append((str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--rules {file}: cannot be read ({exc})") from exc
    loaded = RuleSources(tuple(sources), all_files)
    compiled(loaded)
    return loaded


@functools.lru_cache(maxsize=4)
def compiled(sources: RuleSources) -> Any:
    """The rules compiled, each file in a namespace named after it; once per process and rule set."""
    import yara_x

    compiler = yara_x.Compiler()
    for path, text in sources.files:
        compiler.new_namespace(_namespace(path))
        try:
            compiler.add_source(text, origin=path)
        except yara_x.CompileError as exc:
            raise UsageError(f"--rules: a rule does not compile:\n{exc}") from None
    return compiler.build()


def _namespace(path: str) -> str:
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem) or "rules"


class _Scanners(threading.local):
    """One YARA-X scanner per thread and rule set (a scanner is not shared between threads)."""

    def __init__(self) -> None:
        self.by_rules: dict[str, Any] = {}

    def get(self, sources: RuleSources) -> Any:
        scanner = self.by_rules.get(sources.sha256)
        if scanner is None:
            import yara_x

            scanner = yara_x.Scanner(compiled(sources))
            scanner.set_timeout(SCAN_TIMEOUT_S)
            scanner.max_matches_per_pattern(16)
            self.by_rules[sources.sha256] = scanner
        return scanner


_SCANNERS = _Scanners()


class UserRulesDetector(Detector):
    """Runs the user's YARA rules over candidate files (or every file, with ``all_files``)."""

    name = "user-rules"
    version = 1
    max_size = ALL_FILES_MAX

    def __init__(self, sources: RuleSources) -> None:
        self.sources = sources

    def __eq__(self, other: object) -> bool:  # the same rules are the same detector, in any process
        return isinstance(other, UserRulesDetector) and other.sources == self.sources

    def __hash__(self) -> int:
        return hash(self.sources)

    def interest(self) -> Interest | None:
        if self.sources.all_files:
            return None
        return Interest(heads=(ELF_MAGIC, SCRIPT_HEAD))

    def wants(self, entry: Entry, head: bytes) -> bool:
        return self.sources.all_files or is_elf(head) or head.startswith(SCRIPT_HEAD)

    def rule_tables(self) -> dict[str, Any]:
        return {"rules_sha256": self.sources.sha256, "files": [path for path, _ in self.sources.files],
                "all_files": self.sources.all_files, "max_size": ALL_FILES_MAX}

    def inspect(self, entry: Entry, data: bytes) -> Iterator[Finding]:
        results = _SCANNERS.get(self.sources).scan(data)
        loadable = is_elf(data) and len(data) > 17 and data[16] in _LOADABLE and data[17] == 0
        for rule in results.matching_rules:
            meta = {key: value for key, value in rule.metadata}
            indicates = _INDICATES.get(str(meta.get(INDICATES_META, "")).lower(),
                                       Indicates.IMPLANT if loadable else Indicates.PAYLOAD)
            yield Finding(
                rule=f"yara:{rule.namespace}.{rule.identifier}",
                kind=Kind.SIGNATURE,
                indicates=indicates,
                path=entry.path,
                evidence={
                    "yara_rule": rule.identifier,
                    "namespace": rule.namespace,
                    "tags": list(rule.tags),
                    "meta": meta,
                    "patterns": {p.identifier: [m.offset for m in p.matches][:16] for p in rule.patterns
                                 if p.matches},
                    "rules_sha256": self.sources.sha256,
                },
            )
