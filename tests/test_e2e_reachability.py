"""Reachability on a real Debian bookworm root with openssh-server.

In bookworm, ``readelf -d /usr/sbin/sshd`` lists libsystemd.so.0 and
libsystemd.so.0 lists liblzma.so.5: the chain the distributions created. The
project's inert implant look-alike is placed as the liblzma sshd resolves
(reachable), then each link is broken in turn (dormant, each with its reason).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from layerhound.cli import main
from tests.support.compile import SAMPLES, compile_shared
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, whiteout, write_oci

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]


def test_bookworm_sshd_really_needs_libsystemd_which_needs_liblzma(bookworm_root: Path) -> None:
    """The premise, checked with binutils' readelf on the real files (read, never run)."""

    def needed(path: Path) -> list[str]:
        out = subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True).stdout
        return [line.split("[")[1].split("]")[0] for line in out.splitlines() if "(NEEDED)" in line]

    assert "libsystemd.so.0" in needed(bookworm_root / "usr/sbin/sshd")
    assert "liblzma.so.5" in needed(bookworm_root / "usr/lib/x86_64-linux-gnu/libsystemd.so.0")


@pytest.fixture(scope="module")
def dlopen_libsystemd(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("dlopen")
    return compile_shared(SAMPLES / "libsystemd_dlopen.c", out, soname="libsystemd.so.0").read_bytes()


@pytest.fixture(scope="module")
def layout(
    tmp_path_factory: pytest.TempPathFactory,
    bookworm_layer: Layer,
    bookworm_root: Path,
    implant_so: bytes,
    dlopen_libsystemd: bytes,
) -> Path:
    path = tmp_path_factory.mktemp("reach") / "layout"
    base = bookworm_layer
    in_place = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    clean_lzma = (bookworm_root / "usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1").read_bytes()

    def image(
        tag: str, *layers: Layer, cmd: list[str] = SSHD, env: tuple[str, ...] = (), entrypoint: list[str] | None = None
    ) -> None:
        spec = ImageSpec([base, *layers], cmd=cmd, entrypoint=entrypoint)
        if env:
            spec = ImageSpec([base, *layers], cmd=cmd, entrypoint=entrypoint, env=(*spec.env, *env))
        write_oci(path, spec, tag=tag)

    image("reachable", in_place, env=("LANG=C.UTF-8",))
    image("no-sshd", in_place, Layer.files({"/usr/sbin/sshd": whiteout()}))
    image(
        "dlopen-libsystemd",
        in_place,
        Layer.files({f"{LIB}/libsystemd.so.0.35.0": file(dlopen_libsystemd)}),
    )
    opt = Layer.files({"/opt/xz/lib/liblzma.so.5": file(implant_so)})
    image("ld-library-path-to-implant", opt, env=("LD_LIBRARY_PATH=/opt/xz/lib",))
    image("ld-library-path-elsewhere", opt, env=("LD_LIBRARY_PATH=/opt/other/lib",))
    image(
        "clean-lzma-earlier",
        in_place,
        Layer.files({"/opt/clean/liblzma.so.5": file(clean_lzma)}),
        env=("LD_LIBRARY_PATH=/opt/clean",),
    )
    image("term-set", in_place, env=("TERM=xterm",))
    init = Layer.files(
        {
            "/usr/lib/systemd/systemd": file(b"stand-in for systemd\n"),
            "/usr/sbin/init": symlink("../lib/systemd/systemd"),
        }
    )
    image("systemd-init", in_place, init, cmd=["/sbin/init"])
    image("missing-init", in_place, cmd=["/sbin/init"])
    entry_script = Layer.files({"/docker-entrypoint.sh": file(b'#!/bin/sh\nset -e\nexec "$@"\n', 0o755)})
    image("entrypoint-runs-cmd", in_place, entry_script, entrypoint=["/docker-entrypoint.sh"])
    image("entrypoint-runs-other", in_place, entry_script, entrypoint=["/docker-entrypoint.sh"], cmd=["/bin/bash"])
    return path


def scan_one(capsys: pytest.CaptureFixture[str], ref: str) -> dict[str, Any]:
    main(["scan", "--format", "json", "--no-progress", ref])
    [image] = json.loads(capsys.readouterr().out)["images"]
    return image  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("tag", "verdict", "reason"),
    [
        (
            "reachable",
            "backdoored-reachable",
            "sshd would load the implant at start-up: /usr/sbin/sshd → libsystemd.so.0 "
            "(/usr/lib/x86_64-linux-gnu/libsystemd.so.0.35.0, via ld.so.cache) → liblzma.so.5 "
            "(/usr/lib/x86_64-linux-gnu/liblzma.so.5.6.1, via ld.so.cache)",
        ),
        ("no-sshd", "backdoored-dormant", "no sshd binary in the image"),
        ("dlopen-libsystemd", "backdoored-dormant", "does not list liblzma.so.5 in DT_NEEDED"),
        ("ld-library-path-to-implant", "backdoored-reachable", "/opt/xz/lib/liblzma.so.5, via LD_LIBRARY_PATH"),
        (
            "ld-library-path-elsewhere",
            "backdoored-dormant",
            "would load liblzma.so.5 from /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1 (found by ld.so.cache",
        ),
        (
            "clean-lzma-earlier",
            "backdoored-dormant",
            "would load liblzma.so.5 from /opt/clean/liblzma.so.5 (found by LD_LIBRARY_PATH",
        ),
        ("term-set", "backdoored-dormant", "the image config sets TERM"),
        ("systemd-init", "backdoored-reachable", "systemd starts sshd: multi-user.target.wants/ssh.service is "
         "enabled; /usr/lib/systemd/system/ssh.service line 10: ExecStart=/usr/sbin/sshd -D $SSHD_OPTS starts sshd"),
        ("missing-init", "backdoored-dormant", "program /sbin/init is not in the image"),
        (
            "entrypoint-runs-cmd",
            "backdoored-reachable",
            'runs sshd directly: /usr/sbin/sshd -D (/docker-entrypoint.sh line 3: exec "$@" runs its arguments',
        ),
        ("entrypoint-runs-other", "backdoored-dormant",
         "/docker-entrypoint.sh does not start sshd with these arguments: /docker-entrypoint.sh /bin/bash"),
    ],
)
def test_each_link_of_the_chain(
    capsys: pytest.CaptureFixture[str], layout: Path, tag: str, verdict: str, reason: str
) -> None:
    image = scan_one(capsys, f"oci:{layout}:{tag}")
    assert image["verdict"] == verdict, image["reasons"]
    assert any(reason in r for r in image["reasons"]), image["reasons"]
