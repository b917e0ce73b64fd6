"""Which command of a start-up script starts sshd, and under which condition.

A line that mentions sshd (``mkdir -p /run/sshd``, ``echo "starting sshd"``) does not
start it; ``exec gosu root /usr/sbin/sshd -D`` inside ``if [ "$1" = sshd ]`` does, but
only when the container's first argument is ``sshd``. So scripts are parsed with a real
shell grammar (tree-sitter-bash), every command is unwrapped (``exec``, ``gosu``,
``su-exec``, ``setpriv``, ``tini``, ``env`` …) down to the program it runs, and each
command that runs sshd, runs the script's own arguments (``exec "$@"``) or calls another
script is recorded as a ``Launch`` with its line and the conditions that guard it
(``if``/``elif``/``else``, ``case``, ``&&``/``||``, loops, function calls). A condition
on a positional parameter (``[ "$1" = sshd ]``, ``case "$1" in sshd)``) is kept in a
form the assessment can evaluate against the image's real Cmd.

The same command unwrapping reads supervisord ``command=`` lines, systemd ``ExecStart=``
lines and execline ``run`` scripts (s6-overlay). Nothing from the image is executed:
the parser is a library in this process reading bytes.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
import re
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tree_sitter import Node, Parser

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"})
MAX_LAUNCHES = 32
"""Launches recorded per file; more are counted, not kept (a script is not a list of starts)."""
MAX_NODES = 100_000
"""Syntax nodes one file's walk visits, function calls expanded; hostile nesting stops here."""
MAX_FUNCTION_DEPTH = 4
MAX_NESTED_SCRIPTS = 3
"""``sh -c '…'`` inside ``sh -c '…'``: how deep the quoted scripts are parsed."""
MAX_TEXT = 200
MAX_CONDITIONS = 16
"""Conditions kept per launch: the innermost of a thousand nested ``if``s is judged by its outer 16."""
READ_SLICE = 4096
PARSE_SECONDS = 2.0
"""Time one file's parse may take: the grammar's error recovery is quadratic on hostile nesting
(200,000 open parentheses took minutes); a file over it is recorded as unparsed."""
RUNS_SSHD, RUNS_ARGUMENTS, CALLS, EXECS = "sshd", "arguments", "call", "exec"
"""What a launch runs: sshd, the script's own arguments, a program or script by path, or (``exec``)
some other program that replaces the script, so nothing after it runs."""
LAUNCHERS = frozenset({"service", "invoke-rc.d", "start-stop-daemon", "busybox", "set", "shift"})
"""Commands besides wrappers and shells whose words the walk reads (what they start, or ``set --``)."""
SUBSHELL = "(subshell)"
"""Marks, among the function calls that led to a command, a subshell, pipeline or substitution:
an ``exec`` there ends only that subshell."""
NOT_A_START = frozenset({"-t", "-T", "-G", "-V"})
"""sshd options that test the configuration or print and exit: ``sshd -t`` starts no server."""
SERVICE_ACTIONS = frozenset({"start", "restart", "force-reload", "reload"})
POSITIONAL = re.compile(r"^\$(?:([1-9])|\{([1-9])(?:(:?)[-=]([^}]*))?\})$")
"""``$1``, ``${1}``, ``${1:-default}``, ``${1-default}``."""
ARGUMENTS_WORDS = frozenset({"$@", "${@}", "$*", "${*}"})


@dataclass(frozen=True)
class Wrapper:
    """A program that runs its arguments as a command: which options take a value, how many
    positional words (a user name, a duration) come before the command."""

    takes_value: frozenset[str] = frozenset()
    positional: int = 0
    assignments: bool = False
    """``env``-like: leading ``NAME=value`` words are settings, not the command."""


WRAPPERS: Mapping[str, Wrapper] = {
    "exec": Wrapper(frozenset({"-a"})),
    "nohup": Wrapper(),
    "setsid": Wrapper(),
    "time": Wrapper(),
    "stdbuf": Wrapper(frozenset({"-i", "-o", "-e"})),
    "nice": Wrapper(frozenset({"-n"})),
    "ionice": Wrapper(frozenset({"-c", "-n", "-p"})),
    "timeout": Wrapper(frozenset({"-s", "-k", "--signal", "--kill-after"}), positional=1),
    "env": Wrapper(frozenset({"-u", "--unset", "-C", "--chdir", "-S"}), assignments=True),
    "gosu": Wrapper(positional=1),
    "su-exec": Wrapper(positional=1),
    "s6-setuidgid": Wrapper(positional=1),
    "s6-envdir": Wrapper(positional=1),
    "s6-applyuidgid": Wrapper(frozenset({"-u", "-g", "-G"})),
    "s6-notifyoncheck": Wrapper(frozenset({"-d", "-3", "-s", "-T", "-t", "-n", "-w", "-c"})),
    "with-contenv": Wrapper(),
    "fdmove": Wrapper(positional=2),
    "chpst": Wrapper(frozenset({"-u", "-U", "-e", "-/", "-n", "-l", "-L", "-m", "-d", "-o", "-p", "-f", "-c"})),
    "setpriv": Wrapper(
        frozenset({"--reuid", "--regid", "--groups", "--inh-caps", "--ambient-caps", "--bounding-set",
                   "--securebits", "--selinux-label", "--apparmor-profile", "--pdeathsig", "--ruid",
                   "--euid", "--rgid", "--egid"})
    ),
    "runuser": Wrapper(frozenset({"-u", "--user", "-g", "--group", "-G", "--supp-group", "-s", "--shell",
                                  "-w", "--whitelist-environment"})),
    "sudo": Wrapper(frozenset({"-u", "--user", "-g", "--group", "-C", "-D", "-h", "-p", "-r", "-t", "-U"})),
    "doas": Wrapper(frozenset({"-u", "-C"})),
    "tini": Wrapper(frozenset({"-p", "-e", "-l"})),
    "tini-static": Wrapper(frozenset({"-p", "-e", "-l"})),
    "dumb-init": Wrapper(frozenset({"-r", "--rewrite"})),
    "catatonit": Wrapper(),
}


@dataclass(frozen=True)
class Condition:
    """What must hold for a launch to run. ``argument``/``patterns`` when it tests a positional
    parameter against glob patterns (``case "$1" in sshd|ssh)``), so it can be decided later."""

    text: str
    argument: int | None = None
    patterns: tuple[str, ...] = ()
    negated: bool = False
    glob: bool = True
    """``case`` and ``[[ == ]]`` match patterns; ``[ = ]`` and ``test`` compare strings."""
    default: str | None = None
    """``${1:-sshd}``: the value when the argument is missing (or empty, with ``if_empty``)."""
    if_empty: bool = False

    def holds(self, arguments: Sequence[str]) -> bool | None:
        """True/False when ``arguments`` (the script's $1, $2, …) decide it; None when only the
        runtime does."""
        if self.argument is None:
            return None
        value = arguments[self.argument - 1] if self.argument <= len(arguments) else None
        if self.default is not None and (value is None or (self.if_empty and value == "")):
            value = self.default
        value = value or ""
        if self.glob:
            matched = any(fnmatch.fnmatchcase(value, pattern) for pattern in self.patterns)
        else:
            matched = value in self.patterns
        return matched != self.negated

    def negate(self) -> Condition:
        text = self.text[4:] if self.text.startswith("not ") else f"not {self.text}"
        return dataclasses.replace(self, text=text, negated=not self.negated)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.argument is not None:
            out.update(argument=self.argument, patterns=list(self.patterns), negated=self.negated, glob=self.glob)
            if self.default is not None:
                out.update(default=self.default, if_empty=self.if_empty)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Condition:
        argument = data.get("argument")
        default = data.get("default")
        return cls(
            str(data.get("text", "")),
            argument if isinstance(argument, int) else None,
            tuple(str(p) for p in data.get("patterns") or ()),
            bool(data.get("negated")),
            bool(data.get("glob", True)),
            default if isinstance(default, str) else None,
            bool(data.get("if_empty")),
        )


def positional(text: str) -> tuple[int, str | None, bool] | None:
    """(index, default, default also when empty) of ``$1``, ``${1:-x}``…; None for anything else."""
    match = POSITIONAL.match(text)
    if match is None:
        return None
    index = int(match.group(1) or match.group(2))
    default = match.group(4)
    return index, default, match.group(3) == ":" if default is not None else False


@dataclass(frozen=True)
class Launch:
    """One command that starts sshd (``runs`` = "sshd"), runs the script's own arguments
    ("arguments") or calls another program or script by path ("call")."""

    line: int
    text: str
    runs: str
    program: str = ""
    argv0: str = ""
    """What the started process sees as argv[0] (the implant checks it is /usr/sbin/sshd)."""
    arguments: tuple[str, ...] = ()
    via: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    function: str | None = None
    nested: bool = False
    """In a subshell, pipeline, substitution or background job: an ``exec`` there ends no script."""
    rewritten: tuple[str, ...] | None = None
    """The words of the last ``set -- …`` before this launch: what ``"$@"`` may be by then."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "text": self.text, "runs": self.runs}
        if self.nested:
            out["nested"] = True
        if self.rewritten is not None:
            out["rewritten"] = list(self.rewritten)
        if self.program:
            out.update(program=self.program, argv0=self.argv0)
        if self.arguments:
            out["arguments"] = list(self.arguments)
        if self.via:
            out["via"] = list(self.via)
        if self.conditions:
            out["conditions"] = [c.to_json() for c in self.conditions]
        if self.function:
            out["function"] = self.function
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Launch:
        return cls(
            int(data.get("line") or 0),
            str(data.get("text", "")),
            str(data.get("runs", "")),
            str(data.get("program", "")),
            str(data.get("argv0", "")),
            tuple(str(a) for a in data.get("arguments") or ()),
            tuple(str(v) for v in data.get("via") or ()),
            tuple(Condition.from_json(c) for c in data.get("conditions") or () if isinstance(c, Mapping)),
            data.get("function") if isinstance(data.get("function"), str) else None,
            bool(data.get("nested")),
            tuple(str(w) for w in data["rewritten"]) if isinstance(data.get("rewritten"), list) else None,
        )


@dataclass
class Launches:
    """Every launch found in one file, and whether the walk had to stop early."""

    found: list[Launch] = field(default_factory=list)
    dropped: int = 0
    truncated: bool = False
    syntax_errors: bool = False
    unparsed: bool = False
    """The parse did not finish within ``PARSE_SECONDS``: nothing is known of the file's commands."""

    def add(self, launch: Launch) -> None:
        if len(self.found) < MAX_LAUNCHES:
            self.found.append(launch)
        else:
            self.dropped += 1


@dataclass(frozen=True)
class Command:
    """What one command line runs once its wrappers are peeled off."""

    runs: str
    program: str
    argv0: str
    arguments: tuple[str, ...]
    via: tuple[str, ...]
    script: str | None = None
    """The quoted script of ``sh -c '…'``, to be parsed in turn."""


def interpreter(head: bytes) -> str | None:
    """The base name of the program a ``#!`` line runs: `bash` for `#!/usr/bin/env bash` and
    for s6-overlay's `#!/usr/bin/with-contenv bash`; `execlineb` for execline."""
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    while words and posixpath.basename(words[0]) in ("env", "with-contenv"):
        words = [w for w in words[1:] if not w.startswith("-")]
    return posixpath.basename(words[0]) if words else None


def unwrap(words: Sequence[str]) -> Command | None:
    """The program ``words`` runs after every wrapper, and what kind of launch that is."""
    via: list[str] = []
    argv0: str | None = None
    index = 0
    while index < len(words) and len(via) < 8:
        name = posixpath.basename(words[index])
        wrapper = WRAPPERS.get(name)
        if wrapper is None:
            break
        via.append(name)
        index += 1
        while index < len(words) and words[index].startswith("-") and words[index] != "-":
            option = words[index]
            index += 1
            if option == "--":
                break
            if option in wrapper.takes_value and index < len(words):
                if name == "exec" and option == "-a":
                    argv0 = words[index]
                index += 1
        index += wrapper.positional
        while wrapper.assignments and index < len(words) and "=" in words[index].split("/")[0]:
            index += 1
    if index >= len(words):
        return None
    program, rest = words[index], tuple(words[index + 1 :])
    found = _program(program, rest, via, argv0)
    if found is None and via[:1] == ["exec"]:
        return Command(EXECS, program, argv0 or program, rest, tuple(via))
    return found


def _program(program: str, rest: tuple[str, ...], via: list[str], argv0: str | None) -> Command | None:
    name = posixpath.basename(program)
    if program in ARGUMENTS_WORDS:
        return Command(RUNS_ARGUMENTS, "", "", rest, tuple(via))
    if name == "sshd":
        if NOT_A_START.intersection(rest):
            return None
        return Command(RUNS_SSHD, program, argv0 or program, rest, tuple(via))
    if name == "busybox" and rest:
        inner = unwrap(rest)
        return dataclasses.replace(inner, via=(*via, name, *inner.via)) if inner is not None else None
    if name in SHELLS:
        at = next((i for i, w in enumerate(rest) if w.startswith("-") and not w.startswith("--") and "c" in w), None)
        if at is not None and at + 1 < len(rest):  # sh -c, -lc, -ec: the script, then $0, then $1…
            return Command(CALLS, program, program, rest[at + 3 :], (*via, name), script=rest[at + 1])
        scripts = [w for w in rest if not w.startswith("-")]
        if scripts and "/" in scripts[0]:
            at = rest.index(scripts[0])
            return Command(CALLS, scripts[0], scripts[0], rest[at + 1 :], (*via, name))
        return None
    if name in ("service", "invoke-rc.d") and len(rest) >= 2 and rest[1] in SERVICE_ACTIONS:
        script = f"/etc/init.d/{rest[0]}"
        return Command(CALLS, script, script, rest[1:], (*via, name))
    if name == "start-stop-daemon":
        return _start_stop_daemon(rest, via)
    if "/" in program and not program.startswith("$"):
        return Command(CALLS, program, argv0 or program, rest, tuple(via))
    return None


def _start_stop_daemon(rest: Sequence[str], via: Sequence[str]) -> Command | None:
    options: dict[str, str] = {}
    starting = False
    for index, word in enumerate(rest):
        if word == "--":
            break
        if word in ("--start", "-S"):
            starting = True
        for long, short in (("--exec", "-x"), ("--startas", "-a")):
            if word.startswith(long + "="):
                options[long] = word.split("=", 1)[1]
            elif word in (long, short) and index + 1 < len(rest):
                options[long] = rest[index + 1]
    program = options.get("--startas") or options.get("--exec")
    if not starting or not program:
        return None
    arguments = tuple(rest[rest.index("--") + 1 :]) if "--" in rest else ()
    command = unwrap([program, *arguments])
    if command is None:
        return None
    return Command(command.runs, command.program, command.argv0, command.arguments,
                   (*via, "start-stop-daemon", *command.via), command.script)


def clip(text: str) -> str:
    first = text.strip().split("\n", 1)[0]
    return first[:MAX_TEXT]


@lru_cache(maxsize=1)
def _parser() -> Parser:
    """The bash grammar, loaded once per process and only when a shell script is read."""
    import tree_sitter
    import tree_sitter_bash

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language()))


def shell_launches(source: bytes) -> Launches:
    """Every launch in a shell script, with its line and conditions."""
    result = Launches()
    _ShellWalk(result).script(source, line_offset=0, conditions=(), depth=0)
    return result


@dataclass
class _Script:
    """The script (or quoted ``sh -c`` script) being walked: its bytes, its functions, where it sits."""

    source: bytes
    line_offset: int
    depth: int
    functions: dict[str, Node] = field(default_factory=dict)


_Work = tuple["Node", tuple[Condition, ...], tuple[str, ...]]
"""A node still to visit, the conditions guarding it, and the function calls that led to it."""


class _ShellWalk:
    """One walk over a script's syntax tree; explicit stacks, so nesting costs no recursion."""

    def __init__(self, result: Launches) -> None:
        self.result = result
        self.nodes = 0
        self.variables: dict[str, str] = {}
        self.positional_rewritten = False
        self.via: tuple[str, ...] = ()
        """The wrappers of the ``sh -c`` whose quoted script is being walked."""
        self._script = _Script(b"", 0, 0)
        self._deadline = time.monotonic() + PARSE_SECONDS
        """One deadline for the file and every ``sh -c`` script in it, however often a function runs it."""
        self._trees: dict[bytes, Any] = {}
        self.rewrite: tuple[str, ...] | None = None

    def script(self, source: bytes, line_offset: int, conditions: tuple[Condition, ...], depth: int) -> None:
        tree = self._trees.get(source)
        if tree is None:
            deadline = self._deadline
            parser = _parser()
            try:
                tree = parser.parse(lambda offset, _point: source[offset : offset + READ_SLICE],
                                    progress_callback=lambda *_state: time.monotonic() > deadline)
            except ValueError:  # cancelled by the deadline
                parser.reset()  # else the next file's parse would resume this one
                self.result.unparsed = True
                return
            if len(self._trees) < 64:
                self._trees[source] = tree
        outer, self._script = self._script, _Script(source, line_offset, depth)
        try:
            self._walk(tree.root_node, conditions)
        finally:
            self._script = outer

    def _walk(self, root: Node, conditions: tuple[Condition, ...]) -> None:
        self.result.syntax_errors = self.result.syntax_errors or root.has_error
        functions = self._script.functions
        for node in self._descendants(root):
            self.nodes += 1
            if self.nodes > MAX_NODES:
                self.result.truncated = True
                return
            if node.type == "function_definition":
                name = node.child_by_field_name("name")
                body = node.child_by_field_name("body")
                if name is not None and body is not None and name.text is not None:
                    functions[name.text.decode("utf-8", "replace")] = body
        stack: list[_Work] = [(root, conditions, ())]
        while stack:
            node, guards, calls = stack.pop()
            self.nodes += 1
            if self.nodes > MAX_NODES:
                self.result.truncated = True
                return
            pushed = self._visit(node, guards, calls)
            stack.extend(reversed(pushed))

    def _descendants(self, root: Node) -> Iterator[Node]:
        stack = [root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.named_children)

    def _visit(self, node: Node, guards: tuple[Condition, ...], calls: tuple[str, ...]) -> list[_Work]:
        kind = node.type
        if kind == "function_definition":
            return []
        if kind == "variable_assignment":
            self._assign(node)
            return []
        if kind == "if_statement":
            return self._if(node, guards, calls)
        if kind == "case_statement":
            return self._case(node, guards, calls)
        if kind == "list":
            return self._list(node, guards, calls)
        if kind in ("while_statement", "until_statement"):
            condition = node.child_by_field_name("condition")
            body = node.child_by_field_name("body")
            out = [(c, guards, calls) for c in node.named_children if body is None or c.id != body.id]
            if body is not None:
                loop = Condition(f"{kind.split('_')[0]} {self._text(condition)}")
                out.append((body, _and(guards, loop), calls))
            return out
        if kind == "command":
            return self._command(node, guards, calls)
        if kind in ("subshell", "command_substitution", "process_substitution") or (
            kind == "pipeline" and len(node.named_children) > 1
        ):
            inner = calls if SUBSHELL in calls else (*calls, SUBSHELL)
            return [(child, guards, inner) for child in node.named_children]
        return [(child, guards, calls) for child in node.named_children]

    def _text(self, node: Node | None) -> str:
        """The node's first line, clipped; sliced from the source (``node.text`` would copy a whole
        ``if`` block for each of a thousand nested ones)."""
        if node is None:
            return ""
        start = node.start_byte
        end = min(node.end_byte, start + 4 * MAX_TEXT)
        return clip(self._script.source[start:end].decode("utf-8", "replace"))

    def _assign(self, node: Node) -> None:
        name, value = node.child_by_field_name("name"), node.child_by_field_name("value")
        if name is None or name.text is None:
            return
        literal = self._word(value) if value is not None else ""
        if literal is not None and "$" not in literal:
            self.variables[name.text.decode("utf-8", "replace")] = literal

    def _word(self, node: Node) -> str | None:
        """A word's value where the script fixes it; None when only the runtime knows it."""
        text = node.text.decode("utf-8", "replace") if node.text is not None else ""
        kind = node.type
        if kind in ("word", "number", "extglob_pattern"):
            return text.replace("\\", "")
        if kind == "raw_string":
            return text[1:-1]
        if kind in ("simple_expansion", "expansion"):
            return self._expansion(node, text)
        if kind in ("string", "concatenation"):
            parts: list[str] = []
            for child in node.children:
                if child.type == '"':
                    continue
                if child.type == "string_content":
                    parts.append(child.text.decode("utf-8", "replace") if child.text else "")
                    continue
                value = self._word(child)
                if value is None:
                    return None
                parts.append(value)
            return "".join(parts)
        return None

    def _expansion(self, node: Node, text: str) -> str:
        if text in ARGUMENTS_WORDS or POSITIONAL.match(text):
            return text
        for child in node.named_children:
            if child.type == "variable_name" and child.text is not None:
                name = child.text.decode("utf-8", "replace")
                if name in self.variables and len(node.named_children) == 1:
                    return self.variables[name]
        return text

    def _words(self, node: Node) -> list[str]:
        words: list[str] = []
        for index, child in enumerate(node.children):
            if child.type == "command_name":
                inner = child.named_children
                words.append((self._word(inner[0]) if inner else None) or self._text(child))
            elif node.field_name_for_child(index) == "argument":
                words.append(self._word(child) or self._text(child))
        return words

    def _command(self, node: Node, guards: tuple[Condition, ...], calls: tuple[str, ...]) -> list[_Work]:
        inner = [(c, guards, calls) for c in node.named_children if _holds_commands(c)]
        name = node.child_by_field_name("name")
        first = self._word(name.named_children[0]) if name is not None and name.named_children else None
        if first is not None and not self._may_launch(first):
            return inner  # echo, grep, test…: most commands; their words are never needed
        words = self._words(node)
        if not words:
            return inner
        if words[0] in ("set", "shift") and (words[0] == "shift" or "--" in words[1:]):
            self.positional_rewritten = True
            if words[0] == "set":
                self.rewrite = tuple(words[words.index("--") + 1 :])
        functions = self._script.functions
        if words[0] in functions and words[0] not in calls and len(calls) < MAX_FUNCTION_DEPTH:
            return [*inner, (functions[words[0]], guards, (*calls, words[0]))]
        command = unwrap(words)
        if command is None:
            return inner
        line = self._script.line_offset + node.start_point[0] + 1
        if command.script is not None:
            if self._script.depth < MAX_NESTED_SCRIPTS:
                outer, self.via = self.via, (*self.via, *command.via)
                self.script(command.script.encode(), line - 1, guards, self._script.depth + 1)
                self.via = outer
            return inner
        functions_called = [c for c in calls if c != SUBSHELL]
        background = node.next_sibling is not None and node.next_sibling.type == "&"
        self.result.add(
            Launch(
                line,
                self._text(node),
                command.runs,
                command.program,
                command.argv0,
                command.arguments,
                (*self.via, *command.via),
                guards,
                functions_called[-1] if functions_called else None,
                nested=SUBSHELL in calls or background,
                rewritten=self.rewrite if command.runs == RUNS_ARGUMENTS else None,
            )
        )
        return inner

    def _may_launch(self, program: str) -> bool:
        """Whether a command run as ``program`` could be a launch, a function call or rewrite ``$@``."""
        base = posixpath.basename(program)
        return (
            "/" in program
            or program.startswith("$")
            or base in WRAPPERS
            or base in SHELLS
            or base in LAUNCHERS
            or base == "sshd"
            or program in self._script.functions
        )

    def _condition(self, nodes: Sequence[Node], inside_function: bool) -> Condition:
        text = "; ".join(self._text(n) for n in nodes)
        if len(nodes) != 1 or self.positional_rewritten or inside_function:
            return Condition(text)
        node = nodes[0]
        negated = False
        if node.type == "negated_command" and node.named_children:
            node, negated = node.named_children[0], True
        words: list[str] = []
        glob = False
        if node.type == "test_command" and len(node.named_children) == 1:
            expression = node.named_children[0]
            glob = self._text(node).startswith("[[")
            if expression.type == "binary_expression":
                words = [self._word(c) or self._text(c) for c in expression.children]
        elif node.type == "command":
            found = self._words(node)
            if found and found[0] in ("test", "["):
                words = [w for w in found[1:] if w != "]"]
        if len(words) != 3 or words[1] not in ("=", "==", "!="):
            return Condition(text)
        left, operator, right = words
        if positional(right) and not positional(left):
            left, right = right, left
        found_at = positional(left)
        if found_at is None or "$" in right:
            return Condition(text)
        argument, default, if_empty = found_at
        return Condition(text, argument, (right,), negated != (operator == "!="), glob, default, if_empty)

    def _if(
        self, node: Node, guards: tuple[Condition, ...], calls: tuple[str, ...]
    ) -> list[_Work]:
        out: list[_Work] = []
        earlier: list[Condition] = []
        for tests, body in _branches(node):
            if tests:
                condition = self._condition(tests, _in_function(calls))
                out.extend((t, _and(guards, *earlier), calls) for t in tests)
                out.extend((b, _and(guards, *earlier, condition), calls) for b in body)
                earlier.append(condition.negate())
            else:
                out.extend((b, _and(guards, *earlier), calls) for b in body)
        return out

    def _case(
        self, node: Node, guards: tuple[Condition, ...], calls: tuple[str, ...]
    ) -> list[_Work]:
        value = node.child_by_field_name("value")
        subject = (self._word(value) if value is not None else None) or self._text(value)
        found_at = positional(subject)
        decidable = found_at is not None and not self.positional_rewritten and not _in_function(calls)
        argument, default, if_empty = found_at if found_at is not None and decidable else (None, None, False)
        out: list[_Work] = []
        earlier: list[str] = []
        for item in node.named_children:
            if item.type != "case_item":
                continue
            patterns = [
                (self._word(c) or self._text(c))
                for i, c in enumerate(item.children)
                if item.field_name_for_child(i) == "value"
            ]
            body = [c for i, c in enumerate(item.children) if c.is_named and item.field_name_for_child(i) != "value"]
            if "*" in patterns:
                condition = Condition(f"case {subject} matches none of {'|'.join(earlier)}", argument,
                                      tuple(earlier), True, True, default, if_empty) if earlier else None
            else:
                condition = Condition(f"case {subject} in {'|'.join(patterns)})", argument, tuple(patterns),
                                      False, True, default, if_empty)
            extra = (condition,) if condition is not None else ()
            out.extend((b, _and(guards, *extra), calls) for b in body)
            earlier.extend(patterns)
        return out

    def _list(
        self, node: Node, guards: tuple[Condition, ...], calls: tuple[str, ...]
    ) -> list[_Work]:
        children = node.children
        if len(children) != 3 or children[1].type not in ("&&", "||"):
            return [(c, guards, calls) for c in node.named_children]
        left, operator, right = children
        condition = self._condition([left], _in_function(calls))
        if operator.type == "||":
            condition = condition.negate()
        return [(left, guards, calls), (right, _and(guards, condition), calls)]


def _in_function(calls: tuple[str, ...]) -> bool:
    """Inside a function, ``$1`` is the function's argument, not the script's."""
    return any(call != SUBSHELL for call in calls)


def _and(guards: tuple[Condition, ...], *more: Condition) -> tuple[Condition, ...]:
    """``guards`` and ``more``, the outermost ``MAX_CONDITIONS`` of them (an inner one dropped can
    only make a launch look more likely to run, never hide it)."""
    if len(guards) >= MAX_CONDITIONS:
        return guards
    return (*guards, *more[: MAX_CONDITIONS - len(guards)])


def _holds_commands(node: Node) -> bool:
    """Whether a command's child may run commands of its own (``$(…)``, process substitution)."""
    stack = [node]
    seen = 0
    while stack and seen < 64:
        current = stack.pop()
        seen += 1
        if current.type in ("command_substitution", "process_substitution"):
            return True
        stack.extend(current.named_children)
    return False


def _branches(node: Node) -> Iterator[tuple[list[Node], list[Node]]]:
    """(tests, body) of ``if``, each ``elif`` and ``else`` (no tests), in order."""
    tests: list[Node] = []
    body: list[Node] = []
    in_body = False
    for child in node.children:
        if child.type in ("if", "elif"):
            continue
        if child.type == "then":
            in_body = True
            continue
        if child.type in ("elif_clause", "else_clause"):
            break
        if child.is_named:
            (body if in_body else tests).append(child)
    yield tests, body
    for clause in node.named_children:
        if clause.type == "elif_clause":
            yield from _branches(clause)
        elif clause.type == "else_clause":
            yield [], list(clause.named_children)


def command_launch(words: Sequence[str], line: int, text: str, conditions: tuple[Condition, ...] = ()) -> list[Launch]:
    """The launch one command line makes (a supervisord ``command=``, an ``ExecStart=``): a
    quoted ``sh -c`` script is parsed in turn."""
    command = unwrap(words)
    if command is None:
        return []
    if command.script is not None:
        nested = shell_launches(command.script.encode())
        return [
            dataclasses.replace(n, line=line, text=clip(text), via=(*command.via, *n.via),
                                conditions=(*conditions, *n.conditions))
            for n in nested.found
        ]
    return [Launch(line, clip(text), command.runs, command.program, command.argv0, command.arguments,
                   command.via, conditions)]


def split_words(text: str) -> list[str]:
    """Shell-like words of a configuration value; an unbalanced quote leaves plain words."""
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def systemd_launches(source: bytes) -> Launches:
    """``ExecStart=`` lines of a unit, with systemd's prefixes: ``@`` makes the second word
    argv[0]; ``-``, ``:``, ``+``, ``!`` change nothing about what runs."""
    result = Launches()
    for number, raw in enumerate(source.decode("utf-8", "replace").splitlines(), 1):
        line = raw.strip()
        if not line.startswith("ExecStart=") or line == "ExecStart=":
            continue
        value = line.split("=", 1)[1].strip()
        prefix = re.match(r"^[-@:+!]*", value)
        flags = prefix.group(0) if prefix else ""
        words = split_words(value[len(flags):])
        if "@" in flags and len(words) >= 2:
            for launch in command_launch([words[0], *words[2:]], number, line):
                argv0 = words[1] if launch.program == words[0] else launch.argv0
                result.add(dataclasses.replace(launch, argv0=argv0))
            continue
        for launch in command_launch(words, number, line):
            result.add(launch)
    return result


def supervisord_launches(source: bytes) -> Launches:
    """``command=`` of every ``[program:…]`` section not set to ``autostart=false``."""
    commands: dict[str, list[Launch]] = {}
    disabled: set[str] = set()
    section = ""
    for number, raw in enumerate(source.decode("utf-8", "replace").splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
            continue
        key, _, value = line.partition("=")
        key = key.strip().lower()
        if key == "command" and section.startswith("[program:"):
            commands.setdefault(section, []).extend(command_launch(split_words(value), number, line))
        elif key == "autostart" and value.strip().lower() == "false":
            disabled.add(section)
    result = Launches()
    for name, launches in commands.items():
        for launch in launches if name not in disabled else ():
            result.add(launch)
    return result


def execline_launches(source: bytes) -> Launches:
    """An execline ``run`` script (s6-overlay): one command chain of words, ``{ … }`` blocks
    (``foreground { mkdir -p /run/sshd }``) run first, each its own command."""
    result = Launches()
    text = source.decode("utf-8", "replace")
    body = text.partition("\n")[2] if text.startswith("#!") else text
    offset = 1 if text.startswith("#!") else 0
    try:
        lexer = shlex.shlex(body, posix=True, punctuation_chars="{}")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens: list[tuple[str, int]] = []
        for token in lexer:
            tokens.append((token, lexer.lineno + offset))
            if len(tokens) > 10_000:
                result.truncated = True
                break
    except ValueError:
        result.syntax_errors = True
        return result
    chains: list[list[tuple[str, int]]] = [[]]
    open_chains: list[int] = [0]
    for token, line in tokens:
        current = chains[open_chains[-1]]
        if token == "{":
            if current and current[-1][0] in ("foreground", "background", "if", "ifelse", "ifte"):
                current.pop()
            chains.append([])
            open_chains.append(len(chains) - 1)
        elif token == "}" and len(open_chains) > 1:
            open_chains.pop()
        else:
            current.append((token, line))
    for chain in chains:
        if chain:
            for launch in command_launch([w for w, _ in chain], chain[0][1], " ".join(w for w, _ in chain)):
                result.add(launch)
    return result
