"""The fact collectors reachability relies on, checked against real files and binutils."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from layerhound.detectors.elf_dynamic import ElfDynamicFacts, parse_dynamic
from layerhound.detectors.loader_config import parse_ld_so_cache, parse_ld_so_conf
from layerhound.detectors.startup import StartupFacts
from layerhound.model import Entry, EntryType, Fact


def readelf_dynamic(path: Path, tag: str) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True).stdout
    return [line.split("[", 1)[1].rsplit("]", 1)[0] for line in out.splitlines() if f"({tag})" in line]


def test_dynamic_section_matches_readelf_on_every_elf_of_bookworm(bookworm_root: Path) -> None:
    """DT_NEEDED, SONAME and RUNPATH as binutils reads them, for every ELF of a real Debian root."""
    checked = 0
    for path in sorted(bookworm_root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
        facts = parse_dynamic(path.read_bytes())
        if facts.get("static"):
            assert readelf_dynamic(path, "NEEDED") == []
            continue
        assert facts["needed"] == readelf_dynamic(path, "NEEDED"), path
        assert ([facts["soname"]] if facts["soname"] else []) == readelf_dynamic(path, "SONAME"), path
        runpath = readelf_dynamic(path, "RUNPATH")
        assert facts["runpath"] == (runpath[0].split(":") if runpath else []), path
        checked += 1
    assert checked > 300


def test_sshd_facts_are_collected(bookworm_root: Path) -> None:
    data = (bookworm_root / "usr/sbin/sshd").read_bytes()
    collector = ElfDynamicFacts()
    entry = Entry("/usr/sbin/sshd", EntryType.FILE, len(data))
    assert collector.wants(entry, data[:64])
    [fact] = collector.inspect(entry, data)
    assert isinstance(fact, Fact) and "libsystemd.so.0" in fact.data["needed"]
    assert fact.data["machine"] == "x86_64" and fact.data["class"] == 64
    assert not collector.wants(Entry("/usr/bin/ls", EntryType.FILE, 10), data[:64])  # neither a library nor sshd


def test_truncated_elf_is_an_error_not_a_guess() -> None:
    data = Path("/usr/lib/x86_64-linux-gnu/libc.so.6").read_bytes()
    with pytest.raises(ValueError):
        parse_dynamic(data[:200])


def test_ld_so_cache_matches_ldconfig(bookworm_root: Path) -> None:
    cache = bookworm_root / "etc/ld.so.cache"
    entries = parse_ld_so_cache(cache.read_bytes())
    listed = subprocess.run(["/sbin/ldconfig", "-p", "-C", str(cache)], check=True, capture_output=True, text=True)
    expected = [
        (line.split()[0], line.rsplit("=> ", 1)[1])
        for line in listed.stdout.splitlines()[1:]
        if "=>" in line
    ]
    assert [(soname, path) for soname, path, _ in entries] == expected
    assert ("liblzma.so.5", "/lib/x86_64-linux-gnu/liblzma.so.5", "x86_64") in entries


def test_ld_so_conf_directives() -> None:
    text = "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/usr/local/lib\n/opt/a:/opt/b # tail\n"
    assert parse_ld_so_conf(text) == [
        ("include", "/etc/ld.so.conf.d/*.conf"),
        ("dir", "/usr/local/lib"),
        ("dir", "/opt/a"),
        ("dir", "/opt/b"),
    ]


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        # (a launch starts sshd, one starts it as /usr/sbin/sshd, one runs the arguments, it mentions sshd)
        ("/entrypoint.sh", "#!/bin/sh\nmkdir -p /run/sshd\nexec /usr/sbin/sshd -D\n", (True, True, False, True)),
        ("/start.sh", "#!/bin/bash\n# sshd is started below\nsshd -D\n", (True, False, False, True)),
        ("/docker-entrypoint.sh", '#!/bin/sh\nset -e\nexec "$@"\n', (False, False, True, False)),
        ("/etc/supervisor/conf.d/ssh.conf", "[program:sshd]\ncommand=/usr/sbin/sshd -D\n", (True, True, False, True)),
        ("/prepare.sh", "#!/bin/sh\nmkdir -p /run/sshd\necho 'sshd is ready'\n", (False, False, False, True)),
        ("/run.sh", "#!/bin/sh\nexec nginx -g 'daemon off;'\n", (False, False, False, False)),  # kept: it ends
        ("/usr/bin/sshd-keygen-wrapper", "#!/bin/sh\necho sshd-keygen\n", None),
        ("/usr/bin/helper", "#!/bin/sh\n/usr/local/bin/other --flag\n", None),
    ],
)
def test_startup_facts(path: str, text: str, expected: tuple[bool, bool, bool, bool] | None) -> None:
    data = text.encode()
    collector = StartupFacts()
    entry = Entry(path, EntryType.FILE, len(data))
    assert collector.wants(entry, data[:64])
    facts = list(collector.inspect(entry, data))
    if expected is None:
        assert facts == []
        return
    [fact] = facts
    assert isinstance(fact, Fact)
    launches = fact.data["launches"]
    sshd = [launch for launch in launches if launch["runs"] == "sshd"]
    assert (
        bool(sshd),
        any(launch["argv0"] == "/usr/sbin/sshd" for launch in sshd),
        any(launch["runs"] == "arguments" for launch in launches),
        bool(fact.data["mentions"]),
    ) == expected


def test_sshd_word_matches_the_lines_the_path_prefixed_pattern_did() -> None:
    """The pattern lost its optional `[\\w./-]*/` prefix (quadratic in a line of slashes); same lines match."""
    import random
    import re

    from layerhound.detectors.startup import SSHD_WORD

    with_prefix = re.compile(rb"(?<![\w-])(?:[\w./-]*/)?sshd(?![\w-])")
    rng = random.Random(11)
    alphabet = [b"sshd", b"/", b".", b"-", b"_", b"a", b" ", b"=", b"ssh", b"d", b"\t"]
    lines = [b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(20_000)]
    matched = [bool(SSHD_WORD.search(line)) for line in lines]
    assert matched == [bool(with_prefix.search(line)) for line in lines]
    assert 2_000 < sum(matched) < 18_000  # both outcomes well represented


def test_a_megabyte_line_of_slashes_is_judged_at_once() -> None:
    """A hostile script of one 1 MiB line: the old pattern took hours; a subprocess bounds the wait."""
    from tests.support.capped import run_capped

    program = (
        "from layerhound.detectors.startup import StartupFacts\n"
        "from layerhound.model import Entry, EntryType\n"
        "data = b'#!/bin/sh\\n' + b'/' * (1 << 20) + b' sshd\\n'\n"
        "[fact] = StartupFacts().inspect(Entry('/e.sh', EntryType.FILE, len(data)), data)\n"
        "print(bool(fact.data['mentions']))\n"
    )
    done = run_capped(program, cap_mib=512, timeout=60)
    assert done.status == 0, done.stderr
    assert done.stdout.strip() == "True"
