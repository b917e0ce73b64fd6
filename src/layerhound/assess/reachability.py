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
   argv[0]), through wrappers (tini, gosu, su-exec, setpriv …), a shell or
   entrypoint script — the parsed command that starts it, with its line, and only
   when its conditions can hold for the image's real arguments — supervisord, runit,
   s6-overlay, or systemd with an enabled unit whose ``ExecStart=`` starts sshd;
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
from layerhound.detectors.shell_starts import (
    ARGUMENTS_WORDS,
    CALLS,
    RUNS_ARGUMENTS,
    RUNS_SSHD,
    SHELLS,
    WRAPPERS,
    Launch,
    positional,
    shell_launches,
    unwrap,
)
from layerhound.detectors.startup import SUPERVISOR_DIRS
from layerhound.fs.merged import MergedView
from layerhound.model import EntryType, Fact

SSHD_PATHS = ("/usr/sbin/sshd", "/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd")
IMPLANT_ARGV0 = "/usr/sbin/sshd"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEMD_UNITS = ("ssh.service", "sshd.service", "ssh.socket", "sshd.socket")
SOCKET_SERVICES = {"ssh.socket": "ssh@.service", "sshd.socket": "sshd@.service"}
SUPERVISORS = {
    "supervisord": SUPERVISOR_DIRS,
    "runsvdir": ("/etc/service/", "/etc/sv/", "/etc/runit/"),
    "runit": ("/etc/service/", "/etc/sv/", "/etc/runit/"),
    "runit-init": ("/etc/service/", "/etc/sv/", "/etc/runit/"),
    "s6-svscan": ("/etc/s6-overlay/", "/etc/services.d/"),
}
S6_OVERLAY_INIT = "/init"
BLOCKING_VARIABLES = ("TERM", "LD_DEBUG", "LD_PROFILE", "LD_AUDIT", "LD_BIND_NOT")
KILL_SWITCH = ("yolAbejyiejuvnup", "Evjtgvsh5okmkAvj")
MAX_DEPTH = 6


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

    def through(self, step: str) -> Start:
        self.how = f"{self.how} ({step})"
        return self


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


def _substitute(words: Sequence[str], arguments: Sequence[str]) -> list[str]:
    """A launch's words with the script's positional parameters put in (``"$@"``, ``$1``)."""
    out: list[str] = []
    for word in words:
        if word in ARGUMENTS_WORDS:
            out.extend(arguments)
            continue
        found = positional(word)
        if found is not None:
            index, default, if_empty = found
            value = arguments[index - 1] if index <= len(arguments) else None
            if default is not None and (value is None or (if_empty and value == "")):
                value = default
            out.extend([value] if value is not None else [])
            continue
        out.append(word)
    return out


def _where(path: str, launch: Launch) -> str:
    return f"{path} line {launch.line}: {launch.text}"


class StartAnalysis:
    """Follows the image's Entrypoint/Cmd to sshd, through launchers, scripts and supervisors."""

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

    def _launches(self, path: str) -> list[Launch]:
        return [Launch.from_json(item) for item in self.startup.get(path, {}).get("launches") or ()]

    def analyse(self, argv: Sequence[str], depth: int = 0) -> Start:
        if not argv:
            return Start(False, "nothing (no Entrypoint/Cmd)")
        if depth > MAX_DEPTH:
            return Start(False, "a launcher chain too deep to follow")
        program = argv[0]
        real = self._which(program)
        name = posixpath.basename(real or program)
        shown = " ".join(argv)
        if real is None:
            return Start(False, f"the image's Entrypoint/Cmd program {program} is not in the image: {shown}")
        if name == "sshd":
            return Start(True, f"the image runs sshd directly: {shown}", argv0_absolute=program == IMPLANT_ARGV0)
        if name in WRAPPERS or name in SHELLS:
            command = unwrap([name, *argv[1:]])
            if command is not None and command.script is not None:
                return self._inline(command.script, list(command.arguments), shown, depth)
            if command is not None and command.runs == RUNS_SSHD:
                return Start(True, f"the image runs sshd via {', '.join(command.via)}: {shown}",
                             argv0_absolute=command.argv0 == IMPLANT_ARGV0)
            if command is not None and command.runs == CALLS:
                via = ", ".join(command.via)
                return self.analyse([command.program, *command.arguments], depth + 1).through(f"via {via}")
            if name in WRAPPERS:
                return Start(False, f"the image's Entrypoint/Cmd does not start sshd: {shown}")
        if real in self.startup:
            return self._script(real, list(argv[1:]), shown, depth)
        if real == S6_OVERLAY_INIT or program == S6_OVERLAY_INIT:
            return self._supervised("s6-svscan", shown, depth)
        if name in ("systemd", "init") or real.endswith("/systemd"):
            return self._systemd(shown, depth)
        if name in SUPERVISORS:
            return self._supervised(name, shown, depth)
        return Start(False, f"the image's Entrypoint/Cmd does not start sshd: {shown}")

    def _inline(self, script: str, arguments: list[str], shown: str, depth: int) -> Start:
        """``sh -c '…' sh ARG…`` in the config: the quoted script parsed like a file, given its arguments."""
        launches = shell_launches(script.encode()).found
        found = self._first_start("the shell command", launches, arguments, depth)
        if found is not None:
            return found.through(f"run by: {shown}")
        return Start(False, f"the shell command does not start sshd: {script}")

    def _script(self, script: str, arguments: list[str], shown: str, depth: int) -> Start:
        found = self._first_start(script, self._launches(script), arguments, depth)
        if found is not None:
            return found.through(f"run by: {shown}")
        fact = self.startup.get(script, {})
        mentions = fact.get("mentions") or []
        if mentions and (fact.get("unparsed") or fact.get("truncated")):
            line, text = mentions[0]
            return Start(True, f"the start-up script {script} may start sshd (line {line}: {text}); run by: {shown}",
                         argv0_absolute=IMPLANT_ARGV0 in text,
                         caveats=[f"{script} could not be parsed within layerhound's bounds: its mention of sshd "
                                  "is taken as a start"])
        if mentions:
            line, text = mentions[0]
            return Start(False, f"the start-up script {script} mentions sshd (line {line}: {text}) but no "
                         f"command of it that runs with these arguments starts sshd; run by: {shown}")
        return Start(False, f"the start-up script {script} does not start sshd with these arguments: {shown}")

    def _first_start(self, where: str, launches: Sequence[Launch], arguments: Sequence[str],
                     depth: int) -> Start | None:
        """The first launch, in script order, that can run with these arguments and starts sshd
        (itself, through the arguments it runs, or through a script it calls)."""
        for launch in launches:
            decided = [condition.holds(arguments) for condition in launch.conditions]
            if False in decided:
                continue
            open_conditions = [c.text for c, d in zip(launch.conditions, decided, strict=True) if d is None]
            found = self._launch_start(where, launch, arguments, depth)
            if found is not None and found.starts:
                if open_conditions:
                    found.caveats.insert(0, f"{_where(where, launch)} runs only if {' and '.join(open_conditions)}")
                return found
            if not open_conditions and launch.via[:1] == ("exec",) and not launch.nested:
                return None  # the script is replaced by a program that does not start sshd: nothing after runs
        return None

    def _launch_start(self, where: str, launch: Launch, arguments: Sequence[str], depth: int) -> Start | None:
        via = f" via {', '.join(launch.via)}" if launch.via else ""
        if launch.runs == RUNS_SSHD:
            return Start(True, f"{_where(where, launch)} starts sshd{via}",
                         argv0_absolute=launch.argv0 == IMPLANT_ARGV0)
        if depth >= MAX_DEPTH:
            return None
        if launch.runs == RUNS_ARGUMENTS:
            rest = _substitute(launch.arguments, arguments)
            started = self.analyse([*arguments, *rest], depth + 1) if arguments or rest else None
            if (started is None or not started.starts) and launch.rewritten is not None:
                rewritten = self.analyse([*_substitute(launch.rewritten, arguments), *rest], depth + 1)
                if rewritten.starts:  # the `set --` may not have run: it is a condition of its own
                    rewritten.caveats.insert(0, f"{where}: only if its `set -- {' '.join(launch.rewritten)}` ran")
                    started = rewritten
            if started is None:
                return None
            return started.through(f"{_where(where, launch)} runs its arguments{via}")
        target = self._which(launch.program) if launch.runs == CALLS else None
        if target is None or target == where or target not in self.startup:
            return None
        inner = self._first_start(target, self._launches(target), _substitute(launch.arguments, arguments),
                                  depth + 1)
        return inner.through(f"called from {_where(where, launch)}") if inner is not None else None

    def _supervised(self, supervisor: str, shown: str, depth: int) -> Start:
        dirs = SUPERVISORS[supervisor]
        for path, fact in sorted(self.startup.items()):
            if not path.startswith(dirs):
                continue
            found = self._first_start(path, self._launches(path), [], depth + 1)
            if found is not None:
                return found.through(f"{supervisor} runs it; run by: {shown}")
            if fact.get("kind") == "service" and fact.get("mentions"):
                line, text = fact["mentions"][0]
                return Start(True, f"{supervisor} may start sshd from {path} (line {line}: {text}); run by: {shown}",
                             argv0_absolute=IMPLANT_ARGV0 in text,
                             caveats=[f"{path} is in no syntax layerhound parses: it mentions sshd"])
        return Start(False, f"{supervisor} runs, but none of its service definitions starts sshd: {shown}")

    def _systemd(self, shown: str, depth: int) -> Start:
        not_starting: list[str] = []
        for target, node in sorted(self.view.listing("/etc/systemd/system").items()):
            if not target.endswith(".wants") or not node.children:
                continue
            for unit in sorted(self.view.listing(f"/etc/systemd/system/{target}")):
                enabled = f"/etc/systemd/system/{target}/{unit}"
                found = self._unit_start(enabled, unit, depth)
                if found is not None and found.starts:
                    found.caveats.append("systemd gives services their own environment: the image's Env may not "
                                         "reach sshd")
                    found.how = f"systemd starts sshd: {target}/{unit} is enabled; {found.how}; run by: {shown}"
                    return found
                if found is not None:
                    not_starting.append(found.how)
        if not_starting:
            return Start(False, f"systemd runs, but no enabled unit starts sshd ({'; '.join(not_starting[:3])}): "
                         f"{shown}")
        return Start(False, f"systemd runs, but no ssh/sshd unit is enabled in /etc/systemd/system: {shown}")

    def _unit_start(self, enabled: str, unit: str, depth: int) -> Start | None:
        """Whether one enabled unit starts sshd, read from its ``ExecStart=`` (a socket from the
        service it activates)."""
        found = self.view.resolve(enabled)
        real = found[0] if found else None
        if real is not None and unit in SOCKET_SERVICES:
            real = posixpath.join(posixpath.dirname(real), SOCKET_SERVICES[unit])
        if real is not None and real in self.startup:
            start = self._first_start(real, self._launches(real), [], depth + 1)
            return start if start is not None else Start(False, f"{unit} ({real}) does not start sshd")
        if unit in SYSTEMD_UNITS:
            return Start(True, f"systemd starts sshd: {unit} is enabled", argv0_absolute=True,
                         caveats=[f"the unit file of {unit} was not read ({real or 'missing'}): its name says sshd"])
        return None


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
