"""Replay glibc's dynamic loader on the final filesystem, without running it.

Given an executable's path, compute the set of shared objects ld.so would map
and, for each, the chain that pulled it in and the rule that found it. The
search order is glibc's (checked with ``LD_DEBUG=libs`` on Debian bookworm):

1. a name with a slash is used as is;
2. DT_RPATH of the requesting object and of the objects that loaded it, unless
   the requesting object has DT_RUNPATH;
3. ``LD_LIBRARY_PATH``;
4. DT_RUNPATH of the requesting object;
5. ``/etc/ld.so.cache`` (built by ldconfig from ``/etc/ld.so.conf``);
6. the system directories: ``/lib/<triplet>``, ``/usr/lib/<triplet>``, ``/lib``,
   ``/usr/lib`` on multiarch (Debian) systems, ``/lib64``, ``/usr/lib64`` elsewhere.

In each directory, ``glibc-hwcaps/x86-64-v4..v2`` subdirectories come first.
``LD_PRELOAD`` and ``/etc/ld.so.preload`` are loaded before DT_NEEDED. A
candidate of the wrong ELF class or machine is skipped, as ld.so skips it.
Symlinks are resolved inside the image only. ``dlopen`` is invisible here on
purpose: only what DT_NEEDED names is loaded at start-up, which is when the
implant's IFUNC resolvers run.

Without an ld.so.cache, ld.so itself never reads ld.so.conf; the directories
it lists are still searched (as the ldconfig every image build runs would
make them), and the plan says so.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from layerhound.fs.merged import MergedView
from layerhound.model import EntryType

HWCAPS_SUBDIRS = ("glibc-hwcaps/x86-64-v4", "glibc-hwcaps/x86-64-v3", "glibc-hwcaps/x86-64-v2")
TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "i386": "i386-linux-gnu"}
MAX_OBJECTS = 2000


@dataclass(frozen=True)
class LoadedObject:
    """One shared object in the process image."""

    name: str
    """The name that was asked for (DT_NEEDED entry, preload entry)."""
    path: str
    """Where it was found (before resolving symlinks)."""
    real_path: str
    """The file itself, symlinks resolved inside the image."""
    found_by: str
    """The search rule that found it: rpath, LD_LIBRARY_PATH, runpath, ld.so.cache, ..."""
    parent: str | None
    """Real path of the object whose DT_NEEDED named it (None for the program and preloads)."""


@dataclass
class LoadPlan:
    """Everything the loader would map for one program, and what it could not find."""

    program: str
    objects: dict[str, LoadedObject] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(name, real path of the requester) that no search rule found."""
    notes: list[str] = field(default_factory=list)

    def chain(self, real_path: str) -> list[LoadedObject]:
        """The objects from the program down to ``real_path``."""
        chain: list[LoadedObject] = []
        current: str | None = real_path
        while current is not None and current in self.objects and len(chain) < MAX_OBJECTS:
            obj = self.objects[current]
            chain.append(obj)
            current = obj.parent
        return list(reversed(chain))

    def describe_chain(self, real_path: str) -> str:
        parts = []
        for obj in self.chain(real_path):
            if obj.parent is None and obj.found_by == "program":
                parts.append(obj.real_path)
            else:
                parts.append(f"{posixpath.basename(obj.name)} ({obj.real_path}, via {obj.found_by})")
        return " → ".join(parts)


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (config.get("config") or {}).get("Env") or []:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            env[key] = value
    return env


class Loader:
    """ld.so's search over one image's merged view and ELF/loader facts."""

    def __init__(
        self,
        view: MergedView,
        elf_facts: Mapping[str, dict[str, Any]],
        loader_facts: Mapping[str, dict[str, Any]],
        env: Mapping[str, str],
    ) -> None:
        self.view = view
        self.elf = elf_facts
        self.env = env
        self.loader_facts = loader_facts
        self._cache: list[tuple[str, str, str]] | None = None
        cache_fact = loader_facts.get("/etc/ld.so.cache")
        if cache_fact is not None:
            self._cache = [(str(e[0]), str(e[1]), str(e[2])) for e in cache_fact.get("cache", [])]

    # -- path helpers -----------------------------------------------------

    def _real_file(self, path: str) -> str | None:
        found = self.view.resolve(path)
        if found is None or found[1].entry.type not in (EntryType.FILE, EntryType.HARDLINK):
            return None
        return found[0]

    def _compatible(self, real_path: str, program: dict[str, Any]) -> bool:
        facts = self.elf.get(real_path)
        return (
            facts is not None
            and facts.get("class") == program.get("class")
            and facts.get("machine") == program.get("machine")
        )

    def _expand(self, directory: str, origin: str, machine: str) -> str:
        triplet = TRIPLETS.get(machine, f"{machine}-linux-gnu")
        lib = f"lib/{triplet}" if self.view.lookup(f"/usr/lib/{triplet}") else "lib64"
        for token, value in (("ORIGIN", origin), ("LIB", lib), ("PLATFORM", machine)):
            directory = directory.replace("${" + token + "}", value).replace("$" + token, value)
        return directory

    def system_dirs(self, machine: str) -> list[str]:
        triplet = TRIPLETS.get(machine, f"{machine}-linux-gnu")
        if self.view.lookup(f"/usr/lib/{triplet}") or self.view.lookup(f"/lib/{triplet}"):
            return [f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib"]
        return ["/lib64", "/usr/lib64"] if machine in ("x86_64", "aarch64") else ["/lib", "/usr/lib"]

    def conf_dirs(self) -> list[str]:
        """Directories ld.so.conf lists, includes expanded against the final filesystem."""
        dirs: list[str] = []
        seen: set[str] = set()

        def visit(path: str, depth: int) -> None:
            if depth > 8 or path in seen:
                return
            seen.add(path)
            for kind, value in (self.loader_facts.get(path) or {}).get("conf", []):
                if kind == "dir":
                    dirs.append(value)
                    continue
                pattern = value if value.startswith("/") else posixpath.join(posixpath.dirname(path), value)
                for candidate in sorted(self.loader_facts):
                    if fnmatch.fnmatchcase(candidate, pattern):
                        visit(candidate, depth + 1)

        visit("/etc/ld.so.conf", 0)
        return dirs

    # -- search -----------------------------------------------------------

    def _search_dirs(
        self, name: str, dirs: Sequence[str], program: dict[str, Any], rule: str
    ) -> tuple[str, str, str] | None:
        for directory in dirs:
            for sub in (*HWCAPS_SUBDIRS, ""):
                candidate = posixpath.join(directory, sub, name) if sub else posixpath.join(directory, name)
                real = self._real_file(candidate)
                if real is not None and self._compatible(real, program):
                    found_by = f"{rule}, {sub}" if sub else rule
                    return candidate, real, found_by
        return None

    def find(
        self,
        name: str,
        requester: dict[str, Any],
        rpath_chain: Sequence[str],
        origin: str,
        program: dict[str, Any],
        cache_notes: list[str],
    ) -> tuple[str, str, str] | None:
        """(path, real path, rule) of the object ld.so would map for ``name``."""
        machine = str(program.get("machine"))
        if "/" in name:
            real = self._real_file(name)
            if real is not None and self._compatible(real, program):
                return name, real, "path"
            return None
        steps: list[tuple[str, list[str]]] = []
        if not requester.get("runpath"):
            steps.append(("DT_RPATH", list(rpath_chain)))
        library_path = self.env.get("LD_LIBRARY_PATH", "")
        library_dirs = [d or "." for d in library_path.replace(";", ":").split(":")] if library_path else []
        steps.append(("LD_LIBRARY_PATH", library_dirs))
        steps.append(("DT_RUNPATH", [self._expand(d, origin, machine) for d in requester.get("runpath") or []]))
        for rule, dirs in steps:
            found = self._search_dirs(name, dirs, program, rule)
            if found is not None:
                return found
        if self._cache is not None:
            for soname, path, arch in self._cache:
                if soname == name and arch == machine:
                    real = self._real_file(path)
                    if real is not None and self._compatible(real, program):
                        return path, real, "ld.so.cache"
        else:
            found = self._search_dirs(name, self.conf_dirs(), program, "ld.so.conf")
            if found is not None:
                cache_notes.append("no /etc/ld.so.cache: searched the directories ld.so.conf lists")
                return found
        return self._search_dirs(name, self.system_dirs(machine), program, "system directories")

    def plan(self, program_path: str) -> LoadPlan | None:
        """The load plan of an executable, or None when it is not a usable ELF program."""
        real_program = self._real_file(program_path)
        if real_program is None or real_program not in self.elf:
            return None
        program = self.elf[real_program]
        plan = LoadPlan(program=real_program)
        plan.objects[real_program] = LoadedObject(program_path, program_path, real_program, "program", None)
        by_name: dict[str, str] = {}
        queue: deque[tuple[str, str | None]] = deque()

        preloads = [p for p in self.env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
        preload_fact = self.loader_facts.get("/etc/ld.so.preload") or {}
        preloads += list(preload_fact.get("preload", []))
        for name in preloads:
            queue.append((name, None))
        queue.extend((name, real_program) for name in program.get("needed", []))

        while queue and len(plan.objects) < MAX_OBJECTS:
            name, parent = queue.popleft()
            if name in by_name:
                continue
            requester = self.elf.get(parent, {}) if parent else program
            requester_path = parent or real_program
            rpath_chain = self._rpath_chain(plan, requester_path, str(program.get("machine")))
            origin = posixpath.dirname(plan.objects[requester_path].path) if requester_path in plan.objects else "/"
            found = self.find(name, requester, rpath_chain, origin, program, plan.notes)
            if found is None:
                plan.missing.append((name, requester_path))
                continue
            path, real, rule = found
            by_name[name] = real
            soname = self.elf.get(real, {}).get("soname")
            if soname:
                by_name.setdefault(soname, real)
            if real in plan.objects:
                continue
            if parent is None:
                rule = f"preload, {rule}"
            plan.objects[real] = LoadedObject(name, path, real, rule, parent)
            queue.extend((needed, real) for needed in self.elf.get(real, {}).get("needed", []))
        plan.notes = list(dict.fromkeys(plan.notes))
        return plan

    def _rpath_chain(self, plan: LoadPlan, requester: str, machine: str) -> list[str]:
        """DT_RPATH of the requester and of every object above it, $ORIGIN expanded."""
        dirs: list[str] = []
        current: str | None = requester
        hops = 0
        while current is not None and current in plan.objects and hops < MAX_OBJECTS:
            obj = plan.objects[current]
            origin = posixpath.dirname(obj.path)
            dirs.extend(self._expand(d, origin, machine) for d in self.elf.get(current, {}).get("rpath", []))
            current = obj.parent
            hops += 1
        return dirs


def environment(config: Mapping[str, Any]) -> dict[str, str]:
    """The image config's Env as a mapping (later entries win, as in a runtime)."""
    return _env(config)
