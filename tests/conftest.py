"""Shared, expensive test material: real Debian roots and the project's own implant builds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from isal import igzip

from tests.support.compile import IMPLANT_SIM, compile_shared
from tests.support.debian import debootstrap_rootfs
from tests.support.imagewriter import OCI_LAYER_GZIP, Layer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` go first: with ``-n 2`` one worker takes them while the other runs the rest."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(autouse=True)
def _private_layer_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test gets its own layer cache and data directory: results never leak between tests or
    runs, and the files a crawl keeps (copies of the test implant among them) stay in the test's
    temporary directory, never in the user's (a scan of the host would find them there).

    (The Debian material lives under ~/.cache/layerhound-tests, not XDG_CACHE_HOME.)
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture(scope="session")
def bookworm_root() -> Path:
    """A real Debian bookworm (minbase + openssh-server), debootstrapped once per machine."""
    return debootstrap_rootfs("bookworm-ssh", include=("openssh-server",))


@pytest.fixture(scope="session")
def bookworm_layer(bookworm_root: Path) -> Layer:
    """The bookworm root as one gzip layer blob, packed once per session.

    ISA-L level 1 keeps packing a 230 MB root to a couple of seconds; the blob
    is reused verbatim by every image built on it.
    """
    tar = Layer.from_dir(bookworm_root).tar_bytes()
    blob = igzip.compress(tar, compresslevel=1)
    return Layer.raw_blob(blob, "sha256:" + hashlib.sha256(tar).hexdigest(), OCI_LAYER_GZIP)


@pytest.fixture(scope="session")
def implant_so(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The project's inert look-alike implant with the published signature bytes."""
    out = tmp_path_factory.mktemp("implant")
    return compile_shared(IMPLANT_SIM, out, defines=("WITH_PROLOGUE", "WITH_YARA")).read_bytes()
