"""Would the image's sshd load the implant? A first, deliberately simple rule.

The backdoor only fires inside an sshd process that loaded the implanted
liblzma (via libsystemd on the distributions that patched sshd). This module
checks the three links a person would check first, from the merged final
filesystem and the image config alone, nothing executed:

1. the implanted file is the ``liblzma.so.5`` the dynamic loader finds first on
   its default search path,
2. an sshd binary is present,
3. the image's Entrypoint/Cmd starts sshd (or an init system that may).

Any broken link makes the implant dormant, and the reason names that link.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from layerhound.fs.merged import MergedView
from layerhound.model import EntryType

DEFAULT_LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
)
SONAME = "liblzma.so.5"
SSHD_PATHS = ("/usr/sbin/sshd", "/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd")
INIT_NAMES = {"init", "systemd", "runit", "s6-svscan", "supervisord", "openrc-init"}


@dataclass
class Reachability:
    """Whether sshd would load the implant, and why (not)."""

    reachable: bool
    reasons: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


def _regular_file(view: MergedView, path: str) -> str | None:
    found = view.resolve(path)
    if found is None or found[1].entry.type not in (EntryType.FILE, EntryType.HARDLINK):
        return None
    return found[0]


def loaded_liblzma(view: MergedView) -> str | None:
    """The real path of the ``liblzma.so.5`` the loader would pick by default."""
    for directory in DEFAULT_LIBRARY_DIRS:
        real = _regular_file(view, f"{directory}/{SONAME}")
        if real is not None:
            return real
    return None


def _command(config: dict[str, Any]) -> list[str]:
    inner = config.get("config") or {}
    parts: list[str] = []
    for key in ("Entrypoint", "Cmd"):
        value = inner.get(key)
        if isinstance(value, list):
            parts.extend(str(v) for v in value)
        elif isinstance(value, str):
            parts.append(value)
    return parts


def assess_reachability(
    view: MergedView, config: dict[str, Any], implant_paths: Iterable[str]
) -> Reachability:
    """Apply the three-link rule to the implanted paths of one image."""
    real_implants = {}
    for path in implant_paths:
        real = _regular_file(view, path)
        real_implants[real or path] = path
    result = Reachability(reachable=True)

    loaded = loaded_liblzma(view)
    if loaded is None:
        result.reachable = False
        result.reasons.append(
            f"no {SONAME} on the loader's default search path, so the implant "
            f"({', '.join(sorted(real_implants.values()))}) is not what a program would load"
        )
    elif loaded not in real_implants:
        result.reachable = False
        result.reasons.append(
            f"the {SONAME} a program would load is {loaded}, which is clean; the implant "
            f"lies elsewhere ({', '.join(sorted(real_implants.values()))})"
        )
    else:
        result.reasons.append(f"{SONAME} on the default search path resolves to the implant {loaded}")

    sshd = next((p for p in SSHD_PATHS if _regular_file(view, p)), None)
    if sshd is None:
        result.reachable = False
        result.reasons.append("no sshd binary in the image, so nothing would trigger the backdoor")
    else:
        result.reasons.append(f"sshd is present at {sshd}")

    command = _command(config)
    names = [posixpath.basename(arg.split()[0]) if arg.split() else "" for arg in command]
    if not config:
        result.reachable = False
        result.reasons.append("no image config (host source): nothing says sshd is started")
    elif any("sshd" in arg for arg in command):
        result.reasons.append(f"the image starts sshd: {' '.join(command)}")
    elif names and names[0] in INIT_NAMES:
        result.reasons.append(f"the image starts an init system ({command[0]}) that may start sshd")
        result.caveats.append("whether the init system enables sshd is not checked yet")
    else:
        result.reachable = False
        shown = " ".join(command) if command else "nothing (no Entrypoint/Cmd)"
        result.reasons.append(f"the image's Entrypoint/Cmd does not start sshd: {shown}")

    exposed = (config.get("config") or {}).get("ExposedPorts") or {}
    if "22/tcp" in exposed:
        result.caveats.append("the image exposes 22/tcp")
    return result
