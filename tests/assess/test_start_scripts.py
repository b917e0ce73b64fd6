"""Which command of a start-up script starts sshd, under which condition: parsed, not grepped.

Each case writes the script (or service definition) as text, lets the startup collector
record it exactly as a scan would, and runs the start analysis with the image's argv.
"""

from __future__ import annotations

import pytest

from layerhound.assess.reachability import Start, StartAnalysis, facts_by_path
from layerhound.detectors.startup import StartupFacts
from layerhound.fs.merged import MergedView
from layerhound.model import Entry, EntryType, Fact, LayerResult

PROGRAMS = ("/usr/sbin/sshd", "/bin/sh", "/bin/bash", "/usr/sbin/gosu", "/sbin/su-exec", "/usr/bin/setpriv",
            "/usr/bin/tail", "/usr/sbin/nginx", "/usr/sbin/service", "/usr/bin/env", "/usr/bin/supervisord",
            "/lib/systemd/systemd", "/init")


def analyse(files: dict[str, str], argv: list[str], symlinks: dict[str, str] | None = None) -> Start:
    collector = StartupFacts()
    facts: list[Fact] = []
    for path, text in files.items():
        data = text.encode()
        entry = Entry(path, EntryType.FILE, len(data))
        if collector.wants(entry, data[:64]):
            facts.extend(f for f in collector.inspect(entry, data) if isinstance(f, Fact))
    entries = [Entry(p, EntryType.FILE, 10) for p in (*PROGRAMS, *files)]
    entries += [Entry(p, EntryType.SYMLINK, linkname=t) for p, t in (symlinks or {}).items()]
    view = MergedView.build([LayerResult(digest=None, size=0, entries=entries, facts=facts)])
    return StartAnalysis(view, {}, facts_by_path(facts, "startup")).analyse(argv)


DOCKER_ENTRYPOINT = """#!/bin/sh
set -e
mkdir -p /run/sshd
if [ "$1" = 'sshd' ]; then
    ssh-keygen -A
    exec /usr/sbin/sshd -D -e
fi
exec "$@"
"""

CASE_ENTRYPOINT = """#!/bin/bash
case "$1" in
    server|ssh)
        exec gosu root /usr/sbin/sshd -D
        ;;
    *)
        exec "$@"
        ;;
esac
"""

FUNCTION_ENTRYPOINT = """#!/bin/sh
start_sshd() {
    echo "starting sshd"
    exec su-exec root sshd -D -e
}
if [ "$1" = "server" ]; then
    start_sshd
elif [ "$1" = "shell" ]; then
    exec /bin/sh
else
    exec "$@"
fi
"""

DEBIAN_INIT_SCRIPT = """#! /bin/sh
set -e
test -x /usr/sbin/sshd || exit 0
check_privsep_dir() {
    if [ ! -d /run/sshd ]; then
        mkdir /run/sshd
    fi
}
case "$1" in
  start)
    check_privsep_dir
    log_daemon_msg "Starting OpenBSD Secure Shell server" "sshd" || true
    if start-stop-daemon --start --quiet --oknodo --pidfile /run/sshd.pid --exec /usr/sbin/sshd -- $SSHD_OPTS; then
        log_end_msg 0 || true
    fi
    ;;
  stop)
    start-stop-daemon --stop --quiet --oknodo --pidfile /run/sshd.pid --exec /usr/sbin/sshd
    ;;
esac
"""


@pytest.mark.parametrize(
    ("argv", "starts", "absolute", "cited"),
    [
        (["/docker-entrypoint.sh", "sshd"], True, True, "/docker-entrypoint.sh line 6: exec /usr/sbin/sshd -D -e"),
        (["/docker-entrypoint.sh", "/usr/sbin/sshd", "-D"], True, True, "line 8: exec \"$@\" runs its arguments"),
        (["/docker-entrypoint.sh", "sshd-keygen"], False, None, "mentions sshd (line 3: mkdir -p /run/sshd)"),
        (["/docker-entrypoint.sh", "bash"], False, None, "/docker-entrypoint.sh"),
        (["/docker-entrypoint.sh"], False, None, "/docker-entrypoint.sh"),
        (["/bin/sh", "/docker-entrypoint.sh", "sshd"], True, True, "line 6"),
    ],
)
def test_an_if_on_the_first_argument_is_decided_by_the_real_cmd(
    argv: list[str], starts: bool, absolute: bool | None, cited: str
) -> None:
    start = analyse({"/docker-entrypoint.sh": DOCKER_ENTRYPOINT}, argv)
    assert (start.starts, start.argv0_absolute) == (starts, absolute), start.how
    assert cited in start.how
    assert start.caveats == [], start.caveats  # every condition was decided by the arguments


@pytest.mark.parametrize(
    ("argument", "starts"), [("server", True), ("ssh", True), ("nginx", False), ("/usr/sbin/sshd", True)]
)
def test_case_branches_and_the_default_branch(argument: str, starts: bool) -> None:
    start = analyse({"/entrypoint.sh": CASE_ENTRYPOINT}, ["/entrypoint.sh", argument])
    assert start.starts is starts, start.how
    if argument in ("server", "ssh"):
        assert "/entrypoint.sh line 4: exec gosu root /usr/sbin/sshd -D starts sshd via exec, gosu" in start.how
        assert start.argv0_absolute is True
    if argument == "/usr/sbin/sshd":
        assert "line 7: exec \"$@\" runs its arguments" in start.how


def test_a_function_started_under_a_condition_cites_the_line_in_the_function() -> None:
    start = analyse({"/entrypoint.sh": FUNCTION_ENTRYPOINT}, ["/entrypoint.sh", "server"])
    assert start.starts and start.argv0_absolute is False, start.how  # su-exec runs `sshd`: argv[0] is not absolute
    assert "line 4: exec su-exec root sshd -D -e" in start.how
    assert "echo" not in start.how  # the line that only mentions sshd is not the one cited
    assert analyse({"/entrypoint.sh": FUNCTION_ENTRYPOINT}, ["/entrypoint.sh", "shell"]).starts is False


def test_a_mention_is_not_a_start() -> None:
    script = "#!/bin/sh\nmkdir -p /run/sshd\nchmod 0755 /run/sshd\necho 'sshd: not here'\nexec nginx -g 'daemon off;'\n"
    start = analyse({"/start.sh": script}, ["/start.sh"])
    assert not start.starts
    assert "mentions sshd (line 2: mkdir -p /run/sshd)" in start.how


def test_an_exec_that_replaces_the_script_ends_it() -> None:
    script = '#!/bin/sh\nif [ "$1" = bash ]; then\n  exec "$@"\nfi\nexec /usr/sbin/sshd -D\n'
    assert analyse({"/e.sh": script}, ["/e.sh", "bash"]).starts is False
    start = analyse({"/e.sh": script}, ["/e.sh"])
    assert start.starts and "/e.sh line 5" in start.how


def test_a_condition_only_the_runtime_decides_is_a_caveat() -> None:
    script = '#!/bin/sh\n[ -n "$ENABLE_SSH" ] && /usr/sbin/sshd\nexec nginx -g "daemon off;"\n'
    start = analyse({"/e.sh": script}, ["/e.sh"])
    assert start.starts and start.argv0_absolute is True
    assert start.caveats == ['/e.sh line 2: /usr/sbin/sshd runs only if [ -n "$ENABLE_SSH" ]']
    negated = '#!/bin/sh\n[ -z "$DISABLE_SSH" ] || exit 0\nwhile true; do /usr/sbin/sshd -D; sleep 5; done\n'
    looped = analyse({"/e.sh": negated}, ["/e.sh"])
    assert looped.starts and "runs only if while true" in looped.caveats[0]


def test_rewritten_positional_parameters_make_a_test_undecidable() -> None:
    script = '#!/bin/sh\nif [ "${1#-}" != "$1" ]; then\n  set -- sshd "$@"\nfi\nif [ "$1" = sshd ]; then\n' \
             '  exec /usr/sbin/sshd -D\nfi\nexec "$@"\n'
    start = analyse({"/e.sh": script}, ["/e.sh", "-e"])
    assert start.starts and "/e.sh line 6" in start.how
    assert any('runs only if [ "$1" = sshd ]' in caveat for caveat in start.caveats)


@pytest.mark.parametrize(
    ("line", "absolute"),
    [
        ("exec setpriv --reuid=0 --regid=0 --init-groups /usr/sbin/sshd -D", True),
        ("exec -a /usr/sbin/sshd sshd -D", True),
        ("exec env -i PATH=/usr/bin /usr/sbin/sshd -D", True),
        ("SSHD=/usr/sbin/sshd\nexec $SSHD -D", True),
        ("exec nohup sshd -D", False),
        ("/bin/sh -c 'exec /usr/sbin/sshd -D'", True),
    ],
)
def test_wrappers_and_variables_are_followed_to_the_program(line: str, absolute: bool) -> None:
    start = analyse({"/e.sh": f"#!/bin/sh\n{line}\n"}, ["/e.sh"])
    assert (start.starts, start.argv0_absolute) == (True, absolute), start.how


def test_service_ssh_start_follows_the_init_script() -> None:
    files = {"/start.sh": "#!/bin/bash\nservice ssh start && tail -f /dev/null\n",
             "/etc/init.d/ssh": DEBIAN_INIT_SCRIPT}
    start = analyse(files, ["/start.sh"])
    assert start.starts and start.argv0_absolute is True, start.how
    assert "/etc/init.d/ssh line 13" in start.how and "start-stop-daemon" in start.how
    assert "called from /start.sh line 2: service ssh start" in start.how
    stopped = analyse({**files, "/start.sh": "#!/bin/bash\nservice ssh stop\nexec nginx\n"}, ["/start.sh"])
    assert not stopped.starts


def test_the_config_shell_command_is_parsed() -> None:
    assert analyse({}, ["/bin/sh", "-c", "mkdir -p /run/sshd && echo sshd"]).starts is False
    start = analyse({}, ["/bin/sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D"])
    assert start.starts and start.argv0_absolute is True


S6_RUN = "#!/command/execlineb -P\nforeground { mkdir -p /run/sshd }\ns6-setuidgid root\n/usr/sbin/sshd -D -e\n"


def test_s6_overlay_run_scripts() -> None:
    start = analyse({"/etc/s6-overlay/s6-rc.d/sshd/run": S6_RUN, "/etc/s6-overlay/s6-rc.d/sshd/type": "longrun\n"},
                    ["/init"])
    assert start.starts and start.argv0_absolute is True, start.how
    assert "/etc/s6-overlay/s6-rc.d/sshd/run line 3" in start.how
    legacy = analyse({"/etc/services.d/ssh/run": "#!/usr/bin/with-contenv bash\nexec sshd -D -e\n"}, ["/init"])
    assert legacy.starts and legacy.argv0_absolute is False
    only_mkdir = analyse({"/etc/s6-overlay/s6-rc.d/prep/run": "#!/command/execlineb -P\nmkdir -p /run/sshd\n"},
                         ["/init"])
    assert not only_mkdir.starts


def test_supervisord_autostart_false_does_not_start() -> None:
    conf = "[program:sshd]\ncommand=/usr/sbin/sshd -D\nautostart=false\n"
    assert not analyse({"/etc/supervisor/conf.d/sshd.conf": conf}, ["/usr/bin/supervisord", "-n"]).starts
    wrapped = "[program:sshd]\ncommand=/bin/sh -c \"exec /usr/sbin/sshd -D\"\n"
    assert analyse({"/etc/supervisor/conf.d/sshd.conf": wrapped}, ["/usr/bin/supervisord", "-n"]).starts


@pytest.mark.parametrize(
    ("exec_start", "starts", "absolute"),
    [
        ("ExecStart=/usr/bin/env /usr/sbin/sshd -D", True, True),
        ("ExecStart=@/usr/sbin/sshd sshd -D", False, None),  # argv[0] `sshd`: started, but not as the implant wants
        ("ExecStart=-/bin/sh -c 'exec /usr/sbin/sshd -D'", True, True),
        ("ExecStart=/usr/sbin/nginx", False, None),
    ],
)
def test_systemd_units_are_judged_by_their_exec_start(exec_start: str, starts: bool, absolute: bool | None) -> None:
    unit = f"[Unit]\nDescription=remote access\n[Service]\n{exec_start}\n"
    files = {"/etc/systemd/system/remote.service": unit}
    links = {"/sbin/init": "/lib/systemd/systemd",
             "/etc/systemd/system/multi-user.target.wants/remote.service": "/etc/systemd/system/remote.service"}
    start = analyse(files, ["/sbin/init"], links)
    if exec_start.startswith("ExecStart=@"):
        assert start.starts and start.argv0_absolute is False, start.how
        return
    assert (start.starts, start.argv0_absolute) == (starts, absolute), start.how
    if not starts:
        assert "no enabled unit starts sshd" in start.how


def test_a_systemd_socket_is_judged_by_the_service_it_activates() -> None:
    files = {"/lib/systemd/system/ssh@.service": "[Service]\nExecStart=-/usr/sbin/sshd -i $SSHD_OPTS\n",
             "/lib/systemd/system/ssh.socket": "[Socket]\nListenStream=22\nAccept=yes\n"}
    links = {"/sbin/init": "/lib/systemd/systemd",
             "/etc/systemd/system/sockets.target.wants/ssh.socket": "/lib/systemd/system/ssh.socket"}
    start = analyse(files, ["/sbin/init"], links)
    assert start.starts and start.argv0_absolute is True and "ssh@.service line 2" in start.how


def test_a_hostile_script_is_bounded() -> None:
    """Functions calling each other a hundred times a level: the walk stops at its node budget."""
    from layerhound.detectors.shell_starts import shell_launches

    levels = "".join(f"f{n}() {{ {' ; '.join([f'f{n + 1}'] * 100)} ; }}\n" for n in range(6))
    script = f"#!/bin/sh\n{levels}f6() {{ /usr/sbin/sshd; }}\nf0\n".encode()
    found = shell_launches(script)
    assert found.truncated and len(found.found) <= 32


def test_a_script_too_hostile_to_parse_in_time_is_taken_at_its_mention() -> None:
    """200,000 open parentheses: the grammar's error recovery would take minutes; the parse is cut at
    its deadline, the file is recorded as unparsed, and its mention of sshd counts as a possible start."""
    import time

    from layerhound.detectors.shell_starts import PARSE_SECONDS, shell_launches

    script = "#!/bin/sh\n/usr/sbin/sshd -D\n" + "(" * 200_000 + "/usr/sbin/sshd" + ")" * 200_000 + "\n"
    started = time.monotonic()
    found = shell_launches(script.encode())
    assert found.unparsed and time.monotonic() - started < PARSE_SECONDS + 5
    assert shell_launches(b"#!/bin/sh\nexec /usr/sbin/sshd\n").found  # the shared parser starts afresh
    start = analyse({"/e.sh": script}, ["/e.sh"])
    assert start.starts and start.argv0_absolute is True
    assert "may start sshd (line 2: /usr/sbin/sshd -D)" in start.how
    assert "could not be parsed" in start.caveats[0]


@pytest.mark.parametrize(
    "script",
    [
        "#!/bin/sh\n" + "if true; then " * 5_000 + "/usr/sbin/sshd; " + "fi; " * 5_000,
        "#!/bin/sh\necho " + "$(" * 100_000 + "sshd" + ")" * 100_000,
        "#!/bin/sh\n" + '"' * 1_000_000,
    ],
    ids=["5000-nested-ifs", "deep-substitutions", "a-million-quotes"],
)
def test_deep_or_huge_scripts_stay_bounded(script: str) -> None:
    from layerhound.detectors.shell_starts import MAX_CONDITIONS, MAX_LAUNCHES, shell_launches

    found = shell_launches(script.encode())
    assert len(found.found) <= MAX_LAUNCHES
    assert all(len(launch.conditions) <= MAX_CONDITIONS for launch in found.found)
    assert found.found or found.truncated or found.unparsed or found.syntax_errors


@pytest.mark.parametrize(
    ("script", "argv", "starts"),
    [
        # an exec of another program ends the script: the sshd line after it never runs
        ('#!/bin/sh\nif [ "$1" = app ]; then exec node server.js; fi\nexec /usr/sbin/sshd -D\n', ["app"], False),
        ('#!/bin/sh\nif [ "$1" = app ]; then exec node server.js; fi\nexec /usr/sbin/sshd -D\n', ["x"], True),
        ("#!/bin/sh\nexec /bin/bash\nexec /usr/sbin/sshd -D\n", [], False),
        # ...but an exec in a subshell ends only the subshell
        ("#!/bin/sh\n(exec /usr/bin/foo)\nexec /usr/sbin/sshd -D\n", [], True),
        # `set --` rewrites what "$@" runs
        ('#!/bin/sh\nif [ "${1#-}" != "$1" ]; then set -- /usr/sbin/sshd "$@"; fi\nexec "$@"\n', ["-D"], True),
        # a default for a missing argument
        ('#!/bin/sh\ncase "${1:-sshd}" in sshd) exec /usr/sbin/sshd -D ;; esac\n', [], True),
        ('#!/bin/sh\ncase "${1:-sshd}" in sshd) exec /usr/sbin/sshd -D ;; esac\n', ["web"], False),
        # `[ = ]` compares strings; only `case` and `[[ == ]]` match patterns
        ('#!/bin/sh\n[ "$1" = "*" ] && exec /usr/sbin/sshd -D\n', ["web"], False),
        ('#!/bin/bash\n[[ $1 == ss* ]] && exec /usr/sbin/sshd -D\n', ["sshd"], True),
        # looking for sshd, or testing its configuration, is not starting it
        ("#!/bin/sh\nif command -v sshd >/dev/null; then exec /usr/sbin/sshd -D; fi\n", [], True),
        ("#!/bin/sh\nsshd -t\nexec nginx\n", [], False),
        # sh -c with an option cluster, and with arguments of its own
        ("#!/bin/sh\nexec bash -lc '/usr/sbin/sshd -D'\n", [], True),
        ("#!/bin/sh\nexec busybox sh -c 'exec /usr/sbin/sshd -D'\n", [], True),
    ],
)
def test_what_the_review_found(script: str, argv: list[str], starts: bool) -> None:
    start = analyse({"/e.sh": script}, ["/e.sh", *argv])
    assert start.starts is starts, start.how
    if starts:
        assert start.argv0_absolute is True, start.how


def test_a_config_shell_command_gets_its_own_arguments() -> None:
    start = analyse({}, ["/bin/sh", "-c", 'exec "$@"', "sh", "/usr/sbin/sshd", "-D"])
    assert start.starts and start.argv0_absolute is True, start.how
