"""Would the image's sshd load the implant, and would the implant then fire?

The backdoor only acts inside an sshd process that mapped the implanted
library at start-up (its IFUNC resolvers run while ld.so relocates). This
module checks every link of that chain from the merged final filesystem, the
facts the detectors recorded and the image config — nothing is executed:

1. an sshd program exists and parses as ELF;
2. the replayed loader (``assess.loader``) maps an implanted file into sshd,
   e.g. sshd → libsystemd.so.0 → liblzma.so.5 — a library that only dlopens
   liblzma does not count;
3. the image starts sshd: directly as ``/usr/sbin/sshd`` (the implant checks
   argv[0]), through a shell or entrypoint script, tini/dumb-init, supervisord,
   runit, s6, or systemd with ``ssh.service``/``sshd.service``/``ssh.socket`` enabled;
4. nothing in the image config blocks it: the implant stays inactive when
   ``TERM``, ``LD_DEBUG``, ``LD_PROFILE``, ``LD_AUDIT`` or ``LD_BIND_NOT`` is
   set, or the kill switch ``yolAbejyiejuvnup=Evjtgvsh5okmkAvj`` is.

Any broken link makes the implant dormant; the reasons name it. Conditions
only the runtime decides (a tty setting TERM, LANG) are caveats.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from layerhound.assess.loader import Loader, LoadPlan, environment
from layerhound.fs.merged import MergedView
from layerhound.model import EntryType, Fact

SSHD_PATHS = ("/usr/sbin/sshd", "/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd")
IMPLANT_ARGV0 = "/usr/sbin/sshd"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"}
WRAPPERS = {"tini", "dumb-init", "catatonit", "tini-static", "gosu", "su-exec", "exec", "env", "nohup"}
SYSTEMD_UNITS = ("ssh.service", "sshd.service", "ssh.socket", "sshd.socket")
SUPERVISORS = {
    "supervisord": ("/etc/supervisor/", "/etc/supervisord.conf", "/etc/supervisord.d/"),
    "runsvdir": ("/etc/service/", "/etc/sv/", "/etc/runit/"),
    "runit": ("/etc/service/", "/etc/sv/", "/etc/runit/"),
    "runit-init": ("/etc/service/", "/etc/sv/", "/etc/runit/"),
    "s6-svscan": ("/etc/s6-overlay/", "/etc/services.d/"),
}
S6_OVERLAY_INIT = "/init"
BLOCKING_VARIABLES = ("TERM", "LD_DEBUG", "LD_PROFILE", "LD_AUDIT", "LD_BIND_NOT")
KILL_SWITCH = ("yolAbejyiejuvnup", "Evjtgvsh5okmkAvj")


@dataclass
class Reachability:
    """Whether sshd would load the implant and let it fire, and why (not)."""

    reachable: bool
    reasons: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    """Real paths from sshd down to the implant, when it is loaded."""


@dataclass
class Start:
    """How (whether) the image starts sshd."""

    starts: bool
    how: str
    argv0_absolute: bool | None = None
    caveats: list[str] = field(default_factory=list)


def facts_by_path(facts: Iterable[Fact], collector: str) -> dict[str, dict[str, Any]]:
    """The final filesystem's facts of one collector, keyed by path."""
    return {f.path: f.data for f in facts if f.collector == collector}


def _command(config: Mapping[str, Any]) -> list[str]:
    inner = config.get("config") or {}
    argv: list[str] = []
    for key in ("Entrypoint", "Cmd"):
        value = inner.get(key)
        if isinstance(value, list):
            argv.extend(str(v) for v in value)
        elif isinstance(value, str) and value:
            argv.extend(["/bin/sh", "-c", value])
    return argv


class StartAnalysis:
    """Follows the image's Entrypoint/Cmd to sshd, through the usual launchers."""

    def __init__(self, view: MergedView, env: Mapping[str, str], startup: Mapping[str, dict[str, Any]]) -> None:
        self.view = view
        self.env = env
        self.startup = startup

    def _which(self, program: str) -> str | None:
        if "/" in program:
            found = self.view.resolve(program)
            return found[0] if found else None
        for directory in (self.env.get("PATH") or DEFAULT_PATH).split(":"):
            found = self.view.resolve(posixpath.join(directory or "/", program))
            if found is not None and found[1].entry.type is not EntryType.DIR:
                return found[0]
        return None

    def analyse(self, argv: Sequence[str], depth: int = 0) -> Start:
        if not argv:
            return Start(False, "nothing (no Entrypoint/Cmd)")
        if depth > 4:
            return Start(False, "a launcher chain too deep to follow")
        program = argv[0]
        real = self._which(program)
        name = posixpath.basename(real or program)
        shown = " ".join(argv)
        if real is None:
            return Start(False, f"the image's Entrypoint/Cmd program {program} is not in the image: {shown}")
        if name == "sshd":
            return Start(True, f"the image runs sshd directly: {shown}", argv0_absolute=program == IMPLANT_ARGV0)
        if name in WRAPPERS:
            rest = [a for a in argv[1:] if a != "--" and not a.startswith("-")]
            if rest:
                inner = self.analyse(argv[argv.index(rest[0]) :], depth + 1)
                inner.how = f"{inner.how} (via {name})"
                return inner
        if name in SHELLS and "-c" in argv:
            script = argv[argv.index("-c") + 1] if argv.index("-c") + 1 < len(argv) else ""
            words = script.replace(";", " ").replace("&&", " ").split()
            if any(posixpath.basename(w) == "sshd" for w in words):
                return Start(True, f"a shell command starts sshd: {script}", argv0_absolute=IMPLANT_ARGV0 in words)
            for word in words:
                target = self._which(word) if "/" in word else None
                if target and self._starts_sshd(target):
                    return self._script(target, shown)
            return Start(False, f"the shell command does not start sshd: {script}")
        script_at = 0 if real is not None and real in self.startup else None
        if script_at is None and name in SHELLS and len(argv) > 1:
            candidate = self._which(argv[1])
            if candidate is not None and candidate in self.startup:
                real, script_at = candidate, 1
        if real is not None and script_at is not None:
            if self._starts_sshd(real):
                return self._script(real, shown)
            if self.startup[real].get("runs_arguments") and len(argv) > script_at + 1:
                inner = self.analyse(argv[script_at + 1 :], depth + 1)
                inner.how = f"{inner.how} (via {real}, which runs its arguments)"
                return inner
        if name in ("systemd", "init") or (real or "").endswith("/systemd"):
            if real == S6_OVERLAY_INIT or program == S6_OVERLAY_INIT:
                return self._supervised("s6-svscan", shown)
            return self._systemd(shown)
        if name in SUPERVISORS:
            return self._supervised(name, shown)
        if program == S6_OVERLAY_INIT:
            return self._supervised("s6-svscan", shown)
        return Start(False, f"the image's Entrypoint/Cmd does not start sshd: {shown}")

    def _starts_sshd(self, path: str) -> bool:
        return bool(self.startup.get(path, {}).get("mentions_sshd"))

    def _script(self, script: str, shown: str) -> Start:
        fact = self.startup[script]
        line = fact.get("lines", ["?"])[0]
        return Start(
            True,
            f"the start-up script {script} starts sshd ({line}); run by: {shown}",
            argv0_absolute=bool(fact.get("absolute_sshd")),
            caveats=[f"{script} is a script: whether its sshd line runs depends on its logic"],
        )

    def _supervised(self, supervisor: str, shown: str) -> Start:
        dirs = SUPERVISORS[supervisor]
        for path, fact in sorted(self.startup.items()):
            if path.startswith(dirs) and fact.get("mentions_sshd"):
                return Start(
                    True,
                    f"{supervisor} starts sshd from {path} ({fact.get('lines', ['?'])[0]}); run by: {shown}",
                    argv0_absolute=bool(fact.get("absolute_sshd")),
                )
        return Start(False, f"{supervisor} runs, but none of its service definitions starts sshd: {shown}")

    def _systemd(self, shown: str) -> Start:
        enabled: list[str] = []
        for target, node in sorted(self.view.listing("/etc/systemd/system").items()):
            if target.endswith(".wants") and node.children:
                wants = self.view.listing(f"/etc/systemd/system/{target}")
                enabled.extend(f"{target}/{u}" for u in SYSTEMD_UNITS if u in wants)
        if enabled:
            return Start(
                True,
                f"systemd starts sshd: {', '.join(enabled)} enabled; run by: {shown}",
                argv0_absolute=True,
                caveats=["systemd gives services their own environment: the image's Env may not reach sshd"],
            )
        return Start(False, f"systemd runs, but no ssh/sshd unit is enabled in /etc/systemd/system: {shown}")


def assess_reachability(
    view: MergedView, config: Mapping[str, Any], facts: Sequence[Fact], implant_paths: Iterable[str]
) -> Reachability:
    """Check every link from the image's start-up to the implanted files."""
    env = environment(config)
    elf = facts_by_path(facts, "elf-dynamic")
    loader = Loader(view, elf, facts_by_path(facts, "loader-config"), env)
    implants: dict[str, str] = {}
    for path in implant_paths:
        found = view.resolve(path)
        implants[found[0] if found else path] = path
    result = Reachability(reachable=True)

    sshd = next((p for p in SSHD_PATHS if view.resolve(p) is not None), None)
    plan: LoadPlan | None = loader.plan(sshd) if sshd else None
    if sshd is None:
        result.reachable = False
        result.reasons.append("no sshd binary in the image, so nothing would trigger the backdoor")
    elif plan is None:
        result.reachable = False
        result.reasons.append(f"{sshd} is not a dynamically linked ELF program that could load the implant")
    else:
        _explain_load(result, plan, implants)

    if not config:
        result.reachable = False
        result.reasons.append("no image config (host source): nothing says sshd is started")
    else:
        start = StartAnalysis(view, env, facts_by_path(facts, "startup")).analyse(_command(config))
        result.reasons.append(start.how)
        result.caveats.extend(start.caveats)
        if not start.starts:
            result.reachable = False
        elif start.argv0_absolute is False:
            result.reachable = False
            result.reasons.append(
                f"sshd is not started as {IMPLANT_ARGV0}; the implant checks argv[0] and stays inactive"
            )
        _environment(result, env)

    exposed = (config.get("config") or {}).get("ExposedPorts") or {}
    if "22/tcp" in exposed:
        result.caveats.append("the image exposes 22/tcp")
    return result


def _explain_load(result: Reachability, plan: LoadPlan, implants: Mapping[str, str]) -> None:
    loaded = [real for real in implants if real in plan.objects]
    if loaded:
        real = loaded[0]
        result.chain = [obj.real_path for obj in plan.chain(real)]
        result.reasons.append(f"sshd would load the implant at start-up: {plan.describe_chain(real)}")
        result.caveats.extend(plan.notes)
        return
    result.reachable = False
    where = ", ".join(sorted(implants.values()))
    lzma = next((obj for obj in plan.objects.values() if obj.name.startswith("liblzma.so")), None)
    systemd = next((obj for obj in plan.objects.values() if obj.name.startswith("libsystemd.so")), None)
    if lzma is not None:
        result.reasons.append(
            f"sshd would load {lzma.name} from {lzma.real_path} (found by {lzma.found_by}: "
            f"{plan.describe_chain(lzma.real_path)}), which is not the implant ({where})"
        )
    elif systemd is not None:
        result.reasons.append(
            f"{systemd.name} ({systemd.real_path}) does not list liblzma.so.5 in DT_NEEDED: it can at most "
            f"dlopen it after start-up, which does not count; the implant ({where}) is not loaded"
        )
    else:
        result.reasons.append(
            "sshd does not link libsystemd.so.0 or anything else that needs liblzma.so.5, so its "
            f"start-up never maps the implant ({where})"
        )
    for name, requester in plan.missing[:5]:
        result.caveats.append(f"the loader would not find {name} (needed by {requester})")


def _environment(result: Reachability, env: Mapping[str, str]) -> None:
    blocking = [name for name in BLOCKING_VARIABLES if name in env]
    if blocking:
        result.reachable = False
        result.reasons.append(
            f"the image config sets {', '.join(blocking)}; the implant checks for it and stays inactive"
        )
    if env.get(KILL_SWITCH[0]) == KILL_SWITCH[1]:
        result.reachable = False
        result.reasons.append("the image config sets the implant's kill switch (yolAbejyiejuvnup=Evjtgvsh5okmkAvj)")
    if "TERM" not in env:
        result.caveats.append(
            "a container started with a tty (docker run -t) sets TERM, which keeps the implant inactive"
        )
    if "LANG" not in env:
        result.caveats.append(
            "LANG is not set in the image config; the implant only activates when the runtime sets it"
        )
