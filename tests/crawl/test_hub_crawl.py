"""A crawl of a Docker Hub repository: tags and push dates from the Hub's tag API, content from a mirror.

Docker Hub's tag API is an in-process FAKE here (``tests/support/fakehub.py``:
there is no Docker Hub, no network); it lists the world's ``library/debian``
tags with push dates and digests, as the real API does. The images themselves
come from the real docker-registry of ``tests/crawl/conftest.py``, given as
Docker Hub's mirror (``--registry-mirror docker.io=HOST``), so the crawl runs
the Hub code path end to end: no manifest is fetched for the listing (on the
Hub every manifest GET is a pull), one per image to judge it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerhound.cli import main
from layerhound.registry.hub import ENV_HUB_API
from layerhound.store.results import ResultStore
from tests.crawl.conftest import sqlite_url
from tests.support.fakehub import FakeHub, hub_image, hub_tag
from tests.support.registry import FaultProxy
from tests.support.world import World

PUSHED = {"bookworm-20240301": "2024-03-01T10:00:00Z", "sid": "2024-03-20T10:00:00Z",
          "bookworm-20240415": "2024-04-15T10:00:00Z"}


@pytest.fixture()
def hub(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    tags = []
    for name, pushed in sorted(PUSHED.items(), key=lambda item: item[1], reverse=True):
        written = world.images[f"library/debian:{name}"].written
        assert written is not None and written.manifest_digest is not None
        image = hub_image("amd64", written.manifest_digest)
        tags.append(hub_tag(name, written.manifest_digest, pushed, pushed, [image],
                            media_type="application/vnd.oci.image.manifest.v1+json"))
    server = FakeHub({("library", "debian"): tags}).start()
    monkeypatch.setenv(ENV_HUB_API, server.url)
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))  # no credentials from this machine
    try:
        yield server
    finally:
        server.stop()


def test_a_docker_hub_repository_is_listed_by_the_hub_api_and_pulled_from_the_mirror(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy, hub: FakeHub
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    status = main(["crawl", "--registry-mirror", f"docker.io={counting.host}", "--insecure-registry", counting.host,
                   "--insecure-registry", hub.host, "--db", db, "--jobs", "2", "--no-progress", "--format", "json",
                   "debian"])
    captured = capsys.readouterr()
    assert status == 1, captured.err
    verdicts = {i["ref"]: i["verdict"] for i in json.loads(captured.out)["images"]}
    assert verdicts == {f"docker.io/library/debian:{name}": world.images[f"library/debian:{name}"].verdict
                        for name in PUSHED}
    # The listing came from the Hub API alone; each image cost one manifest GET (a pull) at the mirror.
    assert hub.requests("GET", "/v2/namespaces/library/repositories/debian/tags")
    assert counting.count("HEAD", "/manifests/") == 0
    assert counting.count("GET", "/manifests/") == len(PUSHED)
    with ResultStore.open(db) as store:
        rows = {r.tag: (r.date, r.date_source) for r in store.tags("docker.io/library/debian")}
    assert rows == {name: (pushed, "pushed") for name, pushed in PUSHED.items()}

    # Advice orders the tags by their push dates.
    assert main(["advise", "--db", db, "--no-scan", "--format", "json", "debian:bookworm-20240301"]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["move_to"]["tag"] == "bookworm-20240415" and advice["move_to"]["date"] == PUSHED["bookworm-20240415"]
