"""``layerhound tags`` on Docker Hub, against an in-process FAKE of Docker Hub.

There is no Docker Hub here (no network), so these tests run against
``FakeHub``: a small threaded ``http.server`` on 127.0.0.1, written for these
tests, that reproduces the documented JSON of Docker Hub's tag API
(``GET /v2/namespaces/<ns>/repositories/<repo>/tags?page_size=100`` →
``count``/``next``/``previous``/``results`` with ``name``, ``tag_last_pushed``,
``last_updated``, ``digest``, ``media_type``, ``images[].digest/architecture/
os/variant``…, and ``404 {"message": "httperror 404: object not found"}`` for a
repository that does not exist) and its ``next`` paging — three pages here, as
the fake serves three tags per page whatever ``page_size`` asks for. The same
fake also answers the registry API for a tag whose Hub entry has no digest (the
``HEAD`` layerhound sends then). ``LAYERHOUND_HUB_API`` points layerhound at
the fake; the registry host of Docker Hub is swapped for the fake's.

That the real Hub still answers like this is not tested here.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from layerhound.cli import main
from layerhound.errors import RegistryError
from layerhound.registry import client as registry_client
from layerhound.registry.hub import ENV_HUB_API, HubClient, hub_api_url, parse_tag, parse_timestamp
from layerhound.registry.tags import TagInfo, list_tag_history, parse_repository
from layerhound.report.tags import load_tags_schema
from tests.registry.conftest import fast_options
from tests.support.fakehub import OCI_INDEX, FakeHub
from tests.support.fakehub import digest_of_number as _digest
from tests.support.fakehub import hub_image as _image
from tests.support.fakehub import hub_tag as _tag

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


BOOKWORM = _digest(1)
ATTESTATION = _image("unknown", _digest(99), os="unknown")
MULTI = [_image("amd64", _digest(11)), _image("arm64", _digest(12), "v8"), _image("arm", _digest(13), "v7"),
         ATTESTATION]
BUSTER_DIGEST = _digest(5)
DEBIAN = [  # in the Hub's own order (last_updated, newest first), 8 tags → pages of 3, 3, 2
    _tag("experimental", _digest(8), "2024-03-30T06:00:00.000001Z", "2024-03-30T06:00:01Z", MULTI[:1]),
    _tag("sid-20240329", _digest(7), "2024-03-29T09:00:00Z", "2024-03-29T09:00:00Z", MULTI[:1],
         media_type=DOCKER_MANIFEST),
    _tag("bookworm", BOOKWORM, "2024-03-12T01:23:45.123456Z", "2024-03-12T01:23:46Z", MULTI),
    _tag("12", BOOKWORM, "2024-03-12T01:23:45.123456Z", "2024-03-12T01:23:46Z", MULTI),
    _tag("11", _digest(2), "2024-02-01T00:00:00Z", "2024-02-01T00:00:00Z", MULTI[:2]),
    _tag("10", _digest(3), None, "2023-12-01T00:00:00Z", MULTI[:1]),  # no tag_last_pushed: last_updated
    _tag("buster", None, "2023-06-10T00:00:00Z", "2023-06-10T00:00:00Z", MULTI[:1], media_type=None),  # no digest
    _tag("ancient", _digest(4), None, None, [_image("amd64", _digest(41))], media_type=None),  # no date at all
]
TOOL = [_tag("v1", _digest(21), "2024-01-05T00:00:00Z", "2024-01-05T00:00:00Z", MULTI[:1])]


@pytest.fixture(scope="module")
def fake_hub_server() -> Iterator[FakeHub]:
    server = FakeHub(
        {("library", "debian"): DEBIAN, ("someuser", "tool"): TOOL},
        {"/v2/library/debian/manifests/buster": (BUSTER_DIGEST, OCI_INDEX)},
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub(fake_hub_server: FakeHub, monkeypatch: pytest.MonkeyPatch, no_docker_config: Path) -> Iterator[FakeHub]:
    """The fake, as the Hub API (``LAYERHOUND_HUB_API``) and as Docker Hub's registry host."""
    fake_hub_server.reset()
    monkeypatch.setenv(ENV_HUB_API, fake_hub_server.url)
    monkeypatch.setattr(registry_client, "DOCKER_HUB_API", fake_hub_server.host)
    yield fake_hub_server
    fake_hub_server.reset()


def tags_cli(capsys: pytest.CaptureFixture[str], hub: FakeHub, *args: str) -> tuple[int, dict[str, Any], str]:
    status = main(["tags", "--format", "json", "--insecure-registry", hub.host, *args])
    captured = capsys.readouterr()
    document: dict[str, Any] = json.loads(captured.out) if captured.out.strip() else {}
    if document:
        jsonschema.validate(document, load_tags_schema())
    return status, document, captured.err


def rows(document: dict[str, Any]) -> list[tuple[str, str | None, str | None, str | None, list[str]]]:
    return [(t["name"], t["digest"], t["date"], t["date_source"], t["platforms"]) for t in document["tags"]]


ALL_PLATFORMS = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]


def test_every_tag_with_push_dates_and_platforms_and_no_pull(
    capsys: pytest.CaptureFixture[str], hub: FakeHub
) -> None:
    status, document, err = tags_cli(capsys, hub, "debian")
    assert status == 0, err
    assert document["repository"] == "docker.io/library/debian"
    assert document["source"] == "docker-hub-api"
    assert rows(document) == [
        ("experimental", _digest(8), "2024-03-30T06:00:00.000001Z", "pushed", ["linux/amd64"]),
        ("sid-20240329", _digest(7), "2024-03-29T09:00:00Z", "pushed", ["linux/amd64"]),
        ("12", BOOKWORM, "2024-03-12T01:23:45.123456Z", "pushed", ALL_PLATFORMS),  # the attestation is no platform
        ("bookworm", BOOKWORM, "2024-03-12T01:23:45.123456Z", "pushed", ALL_PLATFORMS),
        ("11", _digest(2), "2024-02-01T00:00:00Z", "pushed", ALL_PLATFORMS[:2]),
        ("10", _digest(3), "2023-12-01T00:00:00Z", "pushed", ["linux/amd64"]),  # from last_updated
        ("buster", BUSTER_DIGEST, "2023-06-10T00:00:00Z", "pushed", ["linux/amd64"]),  # digest from a HEAD
        ("ancient", _digest(4), None, None, ["linux/amd64"]),
    ]
    media = {t["name"]: t["media_type"] for t in document["tags"]}
    assert media["bookworm"] == OCI_INDEX and media["sid-20240329"] == DOCKER_MANIFEST
    assert media["buster"] == OCI_INDEX and media["ancient"] is None  # from the HEAD; unknown
    assert document["counts"]["listed"] == 8 and document["counts"]["shown"] == 8
    # three pages of the Hub API, following `next`
    assert hub.requests("GET", "/v2/namespaces/") == [
        "/v2/namespaces/library/repositories/debian/tags?page_size=100",
        "/v2/namespaces/library/repositories/debian/tags?page=2&page_size=100",
        "/v2/namespaces/library/repositories/debian/tags?page=3&page_size=100",
    ]
    # the registry saw one HEAD (the tag without a digest) and no pull at all
    assert hub.requests("HEAD") == ["/v2/library/debian/manifests/buster"]
    assert [p for p in hub.requests("GET") if not p.startswith("/v2/namespaces/")] == []


def test_window_filter_uses_push_dates(capsys: pytest.CaptureFixture[str], hub: FakeHub) -> None:
    status, document, _ = tags_cli(capsys, hub, "library/debian", "--since", "2024-03-01", "--until", "2024-03-29")
    assert status == 0
    assert [t["name"] for t in document["tags"]] == ["sid-20240329", "12", "bookworm"]
    assert document["counts"] == {
        "listed": 8, "shown": 3, "excluded_by_name": 0, "excluded_by_platform": 0, "excluded_by_date": 4,
        "excluded_undated": 1, "errors": 0,
    }
    assert document["filters"]["since"] == "2024-03-01T00:00:00Z"
    assert document["filters"]["until"] == "2024-03-29T23:59:59.999999Z"
    assert hub.requests("GET", "/v2/library/") == []
    assert hub.requests("HEAD") == []  # buster has no digest, but 2023 is outside the window: not resolved

    hub.reset()
    status, document, _ = tags_cli(capsys, hub, "debian", "--until", "2024-03-29T08:59:59Z", "--since", "2024-03-12")
    assert [t["name"] for t in document["tags"]] == ["12", "bookworm"]
    assert hub.requests("HEAD") == []  # buster (2023) is outside the window: nothing to resolve


def test_window_table_says_how_many_had_no_date(capsys: pytest.CaptureFixture[str], hub: FakeHub) -> None:
    status = main(["tags", "--insecure-registry", hub.host, "debian", "--since", "2024-01-01"])
    out = capsys.readouterr().out
    assert status == 0
    assert "5 of 8 tags shown (2 outside --since/--until; 1 excluded for lack of a date)" in out
    assert "pushed" in out and "created" not in out
    assert "2024-03-12 01:23:45Z" in out


def test_platform_and_glob_filters(capsys: pytest.CaptureFixture[str], hub: FakeHub) -> None:
    status, document, _ = tags_cli(capsys, hub, "docker://docker.io/library/debian", "--platform", "linux/arm64")
    assert status == 0
    assert [(t["name"], t["platforms"]) for t in document["tags"]] == [
        ("12", ["linux/arm64/v8"]), ("bookworm", ["linux/arm64/v8"]), ("11", ["linux/arm64/v8"]),
    ]
    assert document["counts"]["excluded_by_platform"] == 5
    assert hub.requests("HEAD") == []  # buster (amd64 only, no digest) is left out: nothing to resolve

    status, document, _ = tags_cli(capsys, hub, "debian", "--tags", "1?", "--tags", "sid-*")
    assert [t["name"] for t in document["tags"]] == ["sid-20240329", "12", "11", "10"]
    assert document["counts"]["excluded_by_name"] == 4
    assert hub.requests("HEAD") == []


@pytest.mark.parametrize(
    "name",
    ["debian", "library/debian", "docker.io/debian", "docker://docker.io/library/debian",
     "index.docker.io/library/debian", "docker://registry-1.docker.io/library/debian"],
)
def test_bare_and_long_hub_names(name: str) -> None:
    assert parse_repository(name) == ("docker.io", "library/debian")


def test_user_repository(capsys: pytest.CaptureFixture[str], hub: FakeHub) -> None:
    status, document, _ = tags_cli(capsys, hub, "someuser/tool")
    assert status == 0
    assert rows(document) == [("v1", _digest(21), "2024-01-05T00:00:00Z", "pushed", ["linux/amd64"])]
    assert hub.requests("GET", "/v2/namespaces/") == ["/v2/namespaces/someuser/repositories/tool/tags?page_size=100"]


def test_missing_repository_is_one_line(capsys: pytest.CaptureFixture[str], hub: FakeHub) -> None:
    status, document, err = tags_cli(capsys, hub, "nope")
    assert status == 2 and document == {}
    assert err == (
        "layerhound: error: repository not found: docker.io/library/nope does not exist on Docker Hub "
        "(or it is private: the Hub API is asked anonymously)\n"
    )


def test_rate_limit_is_honoured(capsys: pytest.CaptureFixture[str], hub: FakeHub) -> None:
    hub.throttle["2"] = 1
    status, document, _ = tags_cli(capsys, hub, "debian")
    assert status == 0
    assert document["counts"]["listed"] == 8
    assert hub.requests("GET", "/v2/namespaces/library/repositories/debian/tags?page=2") == [
        "/v2/namespaces/library/repositories/debian/tags?page=2&page_size=100"
    ] * 2


def test_next_page_on_another_host_is_refused(hub: FakeHub) -> None:
    hub.next_host = "127.0.0.2:1"
    with fast_options(hub.host) as options, HubClient(options.settings, hub.url) as client, \
            pytest.raises(RegistryError, match="the next page is on another host"):
        client.list_tags("library", "debian")


def test_hub_api_location(hub: FakeHub) -> None:
    assert hub_api_url({}) == "https://hub.docker.com"
    assert hub_api_url({ENV_HUB_API: "http://127.0.0.1:9/"}) == "http://127.0.0.1:9/"
    options = fast_options(environ={ENV_HUB_API: hub.url})
    with pytest.raises(RegistryError, match=f"plain HTTP; declare it with --insecure-registry {hub.host}"):
        HubClient(options.settings)
    with fast_options(hub.host, environ={ENV_HUB_API: hub.url}) as options, HubClient(options.settings) as client:
        assert [t.name for t in client.list_tags("someuser", "tool")] == ["v1"]
    with fast_options(hub.host) as options:
        tags = list_tag_history("someuser/tool", options, hub_api=hub.url)
    assert tags == [
        TagInfo("v1", _digest(21), datetime.datetime(2024, 1, 5, tzinfo=datetime.UTC), "pushed", ("linux/amd64",),
                OCI_INDEX)
    ]


def test_hub_client_over_a_mock_transport() -> None:
    """The client alone, on httpx's MockTransport: retries on 5xx, relative ``next``, odd entries skipped."""
    answers = iter([
        httpx.Response(503),
        httpx.Response(200, json={"next": "/v2/namespaces/a/repositories/b/tags?page=2",
                                  "results": [{"name": "x", "images": None}, {"nope": 1}, "junk"]}),
        httpx.Response(200, json={"next": None, "results": [{"name": "y", "digest": "not-a-digest"}]}),
    ])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return next(answers)

    transport = httpx.MockTransport(handler)
    with fast_options() as options, HubClient(
        options.settings, "https://hub.example", transport=transport, sleep=lambda _: None
    ) as client:
        tags = client.list_tags("a", "b")
    assert [(t.name, t.digest, t.images) for t in tags] == [("x", None, ()), ("y", None, ())]
    assert seen == ["https://hub.example/v2/namespaces/a/repositories/b/tags?page_size=100"] * 2 + [
        "https://hub.example/v2/namespaces/a/repositories/b/tags?page=2"
    ]


def test_timestamps() -> None:
    utc = datetime.UTC
    assert parse_timestamp("2024-03-12T01:23:45.123456789Z") == datetime.datetime(2024, 3, 12, 1, 23, 45, 123456,
                                                                                    tzinfo=utc)
    assert parse_timestamp("2024-03-12T02:23:45+01:00") == datetime.datetime(2024, 3, 12, 1, 23, 45, tzinfo=utc)
    assert parse_timestamp("0001-01-01T00:00:00Z") is None  # Go's zero time: "never"
    assert parse_timestamp("") is None and parse_timestamp(None) is None and parse_timestamp("soon") is None
    tag = parse_tag(_tag("t", None, None, "2024-01-01T00:00:00Z", [ATTESTATION]))
    assert tag is not None and tag.pushed == datetime.datetime(2024, 1, 1, tzinfo=utc)
    assert [i.platform for i in tag.images] == [None]
