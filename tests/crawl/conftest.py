"""The crawl world in a real registry: Debian's docker-registry behind a counting proxy.

Built once per test session (bases from a real debootstrapped bookworm, the
project's own implant, 57 tags over five repositories, some images three
levels deep) and pushed with skopeo. Every request reaches the registry
through ``FaultProxy``, which counts them: how often each blob was downloaded
is read there, at the server side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.imagewriter import Layer
from tests.support.registry import FaultProxy, RegistryServer
from tests.support.world import World, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, bookworm_layer: Layer, implant_so: bytes) -> World:
    return build_world(tmp_path_factory.mktemp("world") / "layout", bookworm_layer, implant_so)


@pytest.fixture(scope="session")
def world_registry(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[RegistryServer]:
    """The registry after the study's history: sid pushed infected, crawled by nobody yet."""
    registry = RegistryServer(tmp_path_factory.mktemp("world-registry"), "anonymous").start()
    try:
        world.push(registry)
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def world_proxy(world_registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(world_registry).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def counting(world_proxy: FaultProxy) -> Iterator[FaultProxy]:
    world_proxy.reset()
    yield world_proxy
    world_proxy.reset()


def repos(proxy: FaultProxy, world: World) -> list[str]:
    return [f"docker://{proxy.host}/{repository}" for repository in world.repositories]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
