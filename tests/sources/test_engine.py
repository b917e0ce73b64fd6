"""Scans through a real engine: Debian's podman, its ``system service`` answering the Docker Engine API.

The images are the project's own (a real debootstrapped bookworm + openssh-server,
with and without the project's test implant), loaded into a private podman
(``tests.support.podman``). They are scanned through the API as
``docker-daemon:`` (``DOCKER_HOST`` at the service's socket) and ``podman:``
(``CONTAINER_HOST``), and compared with the same images read from the OCI
layout they were loaded from and from ``podman save`` archives. Each scan runs
as a subprocess with its own ``TMPDIR`` and cache directory, so "nothing written
on the way" is checked on the real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import scan_json
from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_oci
from tests.support.podman import Podman
from tests.support.registry import RegistryServer, push

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]


@dataclass(frozen=True)
class Loaded:
    name: str
    layout_tag: str
    verdict: str


@dataclass
class Engine:
    podman: Podman
    layout: Path
    images: list[Loaded]
    registry: RegistryServer


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, implant_so: bytes
) -> Iterator[Engine]:
    work = tmp_path_factory.mktemp("engine")
    layout = work / "layout"
    implant = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant_so, 0o755), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    update = Layer.files({"/etc/motd": "patched\n"})
    registry = RegistryServer(work / "registry", "anonymous").start()
    planned = [
        ("reachable", ImageSpec([bookworm_layer, implant], cmd=SSHD), "backdoored-reachable"),
        ("dormant", ImageSpec([bookworm_layer, implant, update], cmd=["/bin/sh"]), "backdoored-dormant"),
        ("clean", ImageSpec([bookworm_layer, update], cmd=SSHD), "clean"),
    ]
    podman = Podman(work / "podman")
    images = []
    for tag, spec, verdict in planned:
        write_oci(layout, spec, tag=tag)
        name = f"{registry.host}/engine/{tag}:1"
        image_id = podman.run("pull", "-q", f"oci:{layout}:{tag}").split()[-1]
        podman.run("tag", image_id, name)
        images.append(Loaded(name, tag, verdict))
    push(f"oci:{layout}:clean", registry, "engine/app", "1")  # in the registry: clean…
    podman.run("tag", f"{registry.host}/engine/dormant:1", f"{registry.host}/engine/app:1")  # …in the engine: dormant
    podman.start()
    try:
        yield Engine(podman, layout, images, registry)
    finally:
        podman.stop()
        registry.stop()


def scan(
    tmp_path: Path, *references: str, env: dict[str, str] | None = None, options: tuple[str, ...] = ()
) -> tuple[int, list[dict[str, Any]], str, Path]:
    """``layerhound scan`` in a subprocess with a private TMPDIR and cache; (status, images, stderr, tmpdir)."""
    tmpdir = tmp_path / f"tmp-{len(list(tmp_path.iterdir()))}"
    tmpdir.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "CONTAINER_HOST", "XDG_RUNTIME_DIR")}
    environment.update(env or {}, TMPDIR=str(tmpdir))
    done = scan_json("--cache-dir", str(tmp_path / "cache"), *options, *references, env=environment, timeout=600)
    return done.status, done.images, done.stderr, tmpdir


def summary(image: dict[str, Any]) -> tuple[str, list[tuple[str, str, bool]]]:
    return image["verdict"], sorted((f["rule"], f["path"], f["in_final_fs"]) for f in image["findings"])


def test_docker_daemon_and_podman_give_the_verdicts_of_the_archives(engine: Engine, tmp_path: Path) -> None:
    names = [image.name for image in engine.images]
    from_layout = scan(tmp_path, *(f"oci:{engine.layout}:{image.layout_tag}" for image in engine.images))[1]
    status, via_docker, stderr, tmpdir = scan(
        tmp_path, *(f"docker-daemon:{name}" for name in names), env={"DOCKER_HOST": engine.podman.url}
    )
    assert status == 1, stderr
    _, via_podman, _, _ = scan(
        tmp_path, *(f"podman:{name}" for name in names), env={"CONTAINER_HOST": engine.podman.url}
    )
    assert [image["verdict"] for image in via_docker] == [image.verdict for image in engine.images]
    assert [summary(image) for image in via_docker] == [summary(image) for image in from_layout]
    assert [summary(image) for image in via_podman] == [summary(image) for image in from_layout]
    reachable = via_docker[0]
    assert reachable["source"] == "docker-daemon" and via_podman[0]["source"] == "podman"
    assert any(f["rule"] and f["layer"] for f in reachable["findings"])
    assert f"read from the Docker engine at {engine.podman.url} (DOCKER_HOST)" in "\n".join(reachable["reasons"])
    # The image IDs are the engine's; the layers are the image's diff_ids, in its order.
    record = json.loads(engine.podman.run("image", "inspect", names[1]))[0]
    assert via_docker[1]["digest"] == "sha256:" + record["Id"].removeprefix("sha256:")
    assert [layer["digest"] for layer in via_docker[1]["layers"]] == record["RootFS"]["Layers"]
    # Nothing written on the way: no temporary file, and the cache holds only its database.
    assert list(tmpdir.iterdir()) == []
    cached = [p.name for p in (tmp_path / "cache").iterdir()]
    assert cached and all(name.startswith("layers.sqlite3") for name in cached), cached


def test_a_second_scan_reads_nothing_from_the_engine(engine: Engine, tmp_path: Path) -> None:
    name = engine.images[0].name
    env = {"CONTAINER_HOST": engine.podman.url}
    first = scan(tmp_path, f"podman:{name}", env=env)[1][0]
    assert not any(layer["cached"] for layer in first["layers"])
    engine.podman.run("tag", name, f"{name}-again")  # same image: its ID, layers and config are known
    second = scan(tmp_path, f"podman:{name}-again", env=env)[1][0]
    assert all(layer["cached"] for layer in second["layers"])
    assert summary(second) == summary(first)


def test_a_bare_name_comes_from_the_engine_while_it_runs_else_from_the_registry(
    engine: Engine, tmp_path: Path
) -> None:
    name = f"{engine.registry.host}/engine/app:1"
    options = ("--insecure-registry", engine.registry.host)
    env = {"CONTAINER_HOST": engine.podman.url}
    status, images, stderr, _ = scan(tmp_path, name, env=env, options=options)
    assert (status, images[0]["verdict"], images[0]["source"]) == (1, "backdoored-dormant", "podman"), stderr
    table = subprocess.run(
        [sys.executable, "-m", "layerhound", "scan", "--no-progress", "--no-cache", *options, name],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=600, check=False,
    ).stdout
    assert any(line.startswith("│") and "│ podman " in line for line in table.splitlines()), table  # "from"
    remote_only = scan(tmp_path, name, env=env, options=(*options, "--image-src", "remote"))[1][0]
    assert (remote_only["verdict"], remote_only["source"]) == ("clean", "registry")
    engine.podman.stop()
    try:
        status, images, stderr, _ = scan(tmp_path, name, env=env, options=options)
        assert (status, images[0]["verdict"], images[0]["source"]) == (0, "clean", "registry"), stderr
        # An explicit transport never falls back.
        status, images, _, _ = scan(tmp_path, f"podman:{name}", env=env)
        assert status == 2 and images[0]["verdict"] == "error"
        assert f"the Podman service at {engine.podman.url}" in images[0]["error"]
        assert "nothing listens" in images[0]["error"] or "does not exist" in images[0]["error"]
    finally:
        engine.podman.start()


def test_engine_errors_are_clear(engine: Engine, tmp_path: Path) -> None:
    env = {"DOCKER_HOST": engine.podman.url}
    status, images, _, _ = scan(tmp_path, "docker-daemon:example.test/none:1", env=env)
    assert status == 2 and "holds no such image" in images[0]["error"]
    missing = tmp_path / "no.sock"
    status, images, _, _ = scan(tmp_path, "docker-daemon:alpine", env={"DOCKER_HOST": f"unix://{missing}"})
    assert status == 2
    assert images[0]["error"] == (
        f"no engine socket: the Docker engine at unix://{missing} (DOCKER_HOST) does not exist"
    )
    status, images, _, _ = scan(tmp_path, "docker-daemon:alpine", env={"DOCKER_HOST": "ssh://me@host"})
    assert status == 2 and "ssh:// endpoints are not supported" in images[0]["error"]
    # No permission: the socket as nobody sees it (root may use any socket).
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    os.symlink(engine.podman.socket, locked / "podman.sock")
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
         sys.executable, "-m", "layerhound", "scan", "--no-cache", "--no-progress", "--format", "json",
         f"podman:{engine.images[0].name}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "CONTAINER_HOST": f"unix://{locked}/podman.sock", "HOME": "/nonexistent"},
    )
    assert done.returncode == 2, done.stderr
    assert "permission denied on the Podman service" in json.loads(done.stdout)["images"][0]["error"]


def test_podman_save_archives_scan_like_the_engine(engine: Engine, tmp_path: Path) -> None:
    """``podman save`` in both formats, and several images in one docker-archive (``-m``)."""
    docker_archive = tmp_path / "docker.tar"
    oci_archive = tmp_path / "oci.tar"
    multi = tmp_path / "multi.tar"
    reachable, dormant, clean = (image.name for image in engine.images)
    engine.podman.run("save", "-q", "--format", "docker-archive", "-o", docker_archive, reachable)
    engine.podman.run("save", "-q", "--format", "oci-archive", "-o", oci_archive, reachable)
    engine.podman.run("save", "-q", "-m", "--format", "docker-archive", "-o", multi, dormant, clean)
    _, images, stderr, _ = scan(
        tmp_path, f"docker-archive:{docker_archive}", f"oci-archive:{oci_archive}", f"docker-archive:{multi}"
    )
    assert [image["verdict"] for image in images] == [
        "backdoored-reachable", "backdoored-reachable", "backdoored-dormant", "clean"
    ], stderr
    assert [image["ref"] for image in images[2:]] == [
        f"docker-archive:{multi}:{dormant}", f"docker-archive:{multi}:{clean}"
    ]
