"""The replayed loader and the start-up analysis, rule by rule, on hand-made filesystems."""

from __future__ import annotations

from typing import Any

import pytest

from layerhound.assess.loader import Loader
from layerhound.assess.reachability import StartAnalysis, assess_reachability, facts_by_path
from layerhound.detectors.startup import StartupFacts
from layerhound.fs.merged import MergedView
from layerhound.model import Entry, EntryType, Fact, LayerResult

LIB = "/usr/lib/x86_64-linux-gnu"


def elf(path: str, needed: list[str] = (), soname: str | None = None, **extra: Any) -> Fact:  # type: ignore[assignment]
    data = {"class": 64, "machine": "x86_64", "type": "dyn", "needed": list(needed), "rpath": [], "runpath": [],
            "soname": soname}
    data.update(extra)
    return Fact("elf-dynamic", path, data)


def fs(files: dict[str, Fact | str | None], symlinks: dict[str, str] | None = None,
       loader: list[Fact] = ()) -> tuple[MergedView, list[Fact]]:  # type: ignore[assignment]
    """A one-layer image: ELF files (with facts), plain files (str) and symlinks."""
    entries = [Entry(p, EntryType.FILE, 10) for p in files]
    entries += [Entry(p, EntryType.SYMLINK, linkname=t) for p, t in (symlinks or {}).items()]
    facts = [f for f in files.values() if isinstance(f, Fact)] + list(loader)
    layer = LayerResult(digest=None, size=0, entries=entries, facts=facts)
    return MergedView.build([layer]), facts


def plan_of(view: MergedView, facts: list[Fact], env: dict[str, str] | None = None, program: str = "/usr/sbin/sshd"):  # type: ignore[no-untyped-def]
    loader = Loader(view, facts_by_path(facts, "elf-dynamic"), facts_by_path(facts, "loader-config"), env or {})
    plan = loader.plan(program)
    assert plan is not None
    return plan


def test_chain_through_system_directories_and_symlinks() -> None:
    view, facts = fs(
        {
            "/usr/sbin/sshd": elf("/usr/sbin/sshd", ["libsystemd.so.0"]),
            f"{LIB}/libsystemd.so.0.35.0": elf(f"{LIB}/libsystemd.so.0.35.0", ["liblzma.so.5"], "libsystemd.so.0"),
            f"{LIB}/liblzma.so.5.4.1": elf(f"{LIB}/liblzma.so.5.4.1", [], "liblzma.so.5"),
        },
        {
            f"{LIB}/libsystemd.so.0": "libsystemd.so.0.35.0",
            f"{LIB}/liblzma.so.5": "liblzma.so.5.4.1",
            "/lib": "usr/lib",
        },
    )
    plan = plan_of(view, facts)
    lzma = plan.objects[f"{LIB}/liblzma.so.5.4.1"]
    assert lzma.found_by == "system directories" and lzma.path == "/lib/x86_64-linux-gnu/liblzma.so.5"
    assert [o.real_path for o in plan.chain(lzma.real_path)] == [
        "/usr/sbin/sshd", f"{LIB}/libsystemd.so.0.35.0", f"{LIB}/liblzma.so.5.4.1"
    ]


def test_search_order_rpath_ld_library_path_runpath_cache_system() -> None:
    names = ["rp", "llp", "run", "cache", "sys"]
    files: dict[str, Fact | str | None] = {
        "/usr/sbin/sshd": elf("/usr/sbin/sshd", ["liba.so"], rpath=["/rp"]),
    }
    for name in names:
        files[f"/{name}/liba.so"] = elf(f"/{name}/liba.so", [], "liba.so")
    cache = Fact("loader-config", "/etc/ld.so.cache", {"cache": [["liba.so", "/cache/liba.so", "x86_64"]]})
    view, facts = fs(files, loader=[cache])

    def found(env: dict[str, str], runpath: list[str] | None = None, rpath: list[str] | None = None) -> str:
        program = facts_by_path(facts, "elf-dynamic")["/usr/sbin/sshd"]
        program["rpath"] = rpath if rpath is not None else ["/rp"]
        program["runpath"] = runpath or []
        plan = plan_of(view, facts, env)
        return next(o.found_by for o in plan.objects.values() if o.name == "liba.so")

    assert found({"LD_LIBRARY_PATH": "/llp"}) == "DT_RPATH"
    # DT_RUNPATH disables DT_RPATH; LD_LIBRARY_PATH still comes before it.
    assert found({"LD_LIBRARY_PATH": "/llp"}, runpath=["/run"]) == "LD_LIBRARY_PATH"
    assert found({}, runpath=["/run"]) == "DT_RUNPATH"
    assert found({}, rpath=[]) == "ld.so.cache"
    facts_by_path(facts, "loader-config")["/etc/ld.so.cache"]["cache"] = []
    files_without_cache = dict(files)
    view2, facts2 = fs(files_without_cache)
    program2 = facts_by_path(facts2, "elf-dynamic")["/usr/sbin/sshd"]
    program2["rpath"] = []
    plan = plan_of(view2, facts2, {}, "/usr/sbin/sshd")
    assert all(o.found_by in ("program",) for o in plan.objects.values() if o.name != "liba.so")
    assert ("liba.so", "/usr/sbin/sshd") in plan.missing  # /sys is not a system directory


def test_ld_so_conf_used_when_no_cache_and_origin_expanded() -> None:
    conf = Fact("loader-config", "/etc/ld.so.conf", {"conf": [["include", "/etc/ld.so.conf.d/*.conf"]]})
    sub = Fact("loader-config", "/etc/ld.so.conf.d/app.conf", {"conf": [["dir", "/opt/app/lib"]]})
    view, facts = fs(
        {
            "/usr/sbin/sshd": elf("/usr/sbin/sshd", ["libapp.so", "libplug.so"], runpath=["$ORIGIN/../plugins"]),
            "/opt/app/lib/libapp.so": elf("/opt/app/lib/libapp.so", [], "libapp.so"),
            "/usr/plugins/libplug.so": elf("/usr/plugins/libplug.so", [], "libplug.so"),
        },
        loader=[conf, sub],
    )
    plan = plan_of(view, facts)
    assert plan.objects["/opt/app/lib/libapp.so"].found_by == "ld.so.conf"
    assert plan.objects["/usr/plugins/libplug.so"].found_by == "DT_RUNPATH"
    assert any("no /etc/ld.so.cache" in note for note in plan.notes)


def test_wrong_class_is_skipped_and_hwcaps_come_first() -> None:
    view, facts = fs(
        {
            "/usr/sbin/sshd": elf("/usr/sbin/sshd", ["liblzma.so.5"]),
            "/lib/x86_64-linux-gnu/liblzma.so.5": elf(
                "/lib/x86_64-linux-gnu/liblzma.so.5", [], "liblzma.so.5", **{"class": 32}
            ),
            f"{LIB}/glibc-hwcaps/x86-64-v3/liblzma.so.5": elf(f"{LIB}/glibc-hwcaps/x86-64-v3/liblzma.so.5", []),
            f"{LIB}/liblzma.so.5": elf(f"{LIB}/liblzma.so.5", []),
        }
    )
    plan = plan_of(view, facts)
    [lzma] = [o for o in plan.objects.values() if o.name == "liblzma.so.5"]
    assert lzma.real_path == f"{LIB}/glibc-hwcaps/x86-64-v3/liblzma.so.5"
    assert "glibc-hwcaps/x86-64-v3" in lzma.found_by


def test_preloads_are_loaded() -> None:
    preload = Fact("loader-config", "/etc/ld.so.preload", {"preload": ["/opt/evil.so"]})
    view, facts = fs(
        {"/usr/sbin/sshd": elf("/usr/sbin/sshd", []), "/opt/evil.so": elf("/opt/evil.so", []),
         f"{LIB}/libx.so": elf(f"{LIB}/libx.so", [])},
        loader=[preload],
    )
    plan = plan_of(view, facts, {"LD_PRELOAD": "libx.so"})
    assert plan.objects["/opt/evil.so"].found_by.startswith("preload")
    assert plan.objects[f"{LIB}/libx.so"].found_by.startswith("preload")


def startup(path: str, text: str) -> Fact:
    """The startup collector's own fact for a file of this text (so the analysis reads what a scan records)."""
    data = text.encode()
    [fact] = StartupFacts().inspect(Entry(path, EntryType.FILE, len(data)), data)
    assert isinstance(fact, Fact)
    return fact


START_FILES: dict[str, Fact | str | None] = {
    "/usr/sbin/sshd": None,
    "/usr/bin/tini": None,
    "/bin/sh": None,
    "/entrypoint.sh": startup("/entrypoint.sh", "#!/bin/sh\nmkdir -p /run/sshd\nexec /usr/sbin/sshd -D\n"),
    "/usr/bin/supervisord": None,
    "/etc/supervisor/conf.d/sshd.conf": startup("/etc/supervisor/conf.d/sshd.conf",
                                                "[program:sshd]\ncommand=/usr/sbin/sshd -D\n"),
    "/docker-entrypoint.sh": startup("/docker-entrypoint.sh", '#!/bin/sh\nset -e\nexec "$@"\n'),
    "/lib/systemd/systemd": None,
    "/lib/systemd/system/ssh.service": startup(
        "/lib/systemd/system/ssh.service",
        "[Service]\nEnvironmentFile=-/etc/default/ssh\nExecStartPre=/usr/sbin/sshd -t\n"
        "ExecStart=/usr/sbin/sshd -D $SSHD_OPTS\nExecReload=/usr/sbin/sshd -t\n",
    ),
}


@pytest.mark.parametrize(
    ("argv", "starts", "absolute"),
    [
        (["/usr/sbin/sshd", "-D"], True, True),
        (["sshd", "-D"], True, False),
        (["/usr/bin/tini", "--", "/usr/sbin/sshd", "-D"], True, True),
        (["/bin/sh", "-c", "mkdir -p /run/sshd && exec /usr/sbin/sshd -D"], True, True),
        (["/entrypoint.sh"], True, True),
        (["/bin/sh", "/entrypoint.sh"], True, True),
        (["/usr/bin/supervisord", "-n"], True, True),
        (["/sbin/init"], True, True),
        (["/docker-entrypoint.sh", "/usr/sbin/sshd", "-D"], True, True),
        (["/bin/sh", "/docker-entrypoint.sh", "sshd", "-D"], True, False),
        (["/docker-entrypoint.sh", "/bin/bash"], False, None),
        (["/docker-entrypoint.sh"], False, None),
        (["/bin/bash"], False, None),
        (["/bin/zsh", "-c", "sshd"], False, None),
        ([], False, None),
    ],
)
def test_start_analysis(argv: list[str], starts: bool, absolute: bool | None) -> None:
    view, facts = fs(
        START_FILES,
        {"/sbin/init": "/lib/systemd/systemd",
         "/etc/systemd/system/multi-user.target.wants/ssh.service": "/lib/systemd/system/ssh.service"},
    )
    start = StartAnalysis(view, {}, facts_by_path(facts, "startup")).analyse(argv)
    assert (start.starts, start.argv0_absolute) == (starts, absolute), start.how


def test_systemd_without_enabled_ssh_unit_does_not_start_sshd() -> None:
    view, _ = fs({"/lib/systemd/systemd": None}, {"/sbin/init": "/lib/systemd/systemd"})
    start = StartAnalysis(view, {}, {}).analyse(["/sbin/init"])
    assert not start.starts and "no ssh/sshd unit is enabled" in start.how


@pytest.mark.parametrize(
    ("env", "blocked_by"),
    [
        (["TERM=xterm"], "TERM"),
        (["LD_DEBUG=all"], "LD_DEBUG"),
        (["LD_AUDIT=/x.so"], "LD_AUDIT"),
        (["yolAbejyiejuvnup=Evjtgvsh5okmkAvj"], "kill switch"),
        (["LANG=C.UTF-8"], None),
    ],
)
def test_environment_blocks_or_not(env: list[str], blocked_by: str | None) -> None:
    view, facts = fs(
        {
            "/usr/sbin/sshd": elf("/usr/sbin/sshd", ["liblzma.so.5"]),
            f"{LIB}/liblzma.so.5": elf(f"{LIB}/liblzma.so.5", [], "liblzma.so.5"),
        }
    )
    config = {"config": {"Cmd": ["/usr/sbin/sshd", "-D"], "Env": env}}
    result = assess_reachability(view, config, facts, [f"{LIB}/liblzma.so.5"])
    assert result.reachable is (blocked_by is None)
    if blocked_by:
        assert any(blocked_by in r for r in result.reasons), result.reasons
    else:
        assert not any("LANG is not set" in c for c in result.caveats)


def test_the_loader_replay_stops_at_its_object_bound() -> None:
    """A chain of 3,000 libraries, each needing the next: the plan holds MAX_OBJECTS, no more."""
    from layerhound.assess.loader import MAX_OBJECTS

    files: dict[str, Fact | str | None] = {"/usr/sbin/sshd": elf("/usr/sbin/sshd", ["lib0.so"])}
    for index in range(3_000):
        path = f"{LIB}/lib{index}.so"
        files[path] = elf(path, [f"lib{index + 1}.so"], f"lib{index}.so")
    plan = plan_of(*fs(files))
    assert len(plan.objects) == MAX_OBJECTS


def test_symlinks_resolve_up_to_the_kernels_limit_of_40() -> None:
    from layerhound.fs.merged import MAX_SYMLINKS

    def chain(hops: int) -> MergedView:
        links = {f"/l{i}": f"/l{i + 1}" for i in range(hops)}
        return fs({f"/l{hops}": "the file"}, links)[0]

    assert chain(MAX_SYMLINKS).resolve("/l0") is not None
    assert chain(MAX_SYMLINKS + 1).resolve("/l0") is None
    loop = fs({}, {"/a": "/b", "/b": "/a"})[0]
    assert loop.resolve("/a") is None
