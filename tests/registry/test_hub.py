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
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from tests.support.registry import LOOPBACK, BackgroundServer, free_port

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
PER_PAGE = 3


def _digest(n: int) -> str:
    return f"sha256:{n:064x}"


def _image(arch: str, digest: str, variant: str | None = None, os: str = "linux") -> dict[str, Any]:
    """One ``images[]`` entry, with every field the Hub documents."""
    return {
        "architecture": arch, "features": "", "variant": variant, "digest": digest, "os": os,
        "os_features": "", "os_version": None, "size": 49_500_000, "status": "active",
        "last_pulled": "2024-04-01T00:00:00.000000Z", "last_pushed": "2024-03-12T01:23:45.123456Z",
    }


def _tag(name: str, digest: str | None, pushed: str | None, updated: str | None, images: list[dict[str, Any]],
         media_type: str | None = OCI_INDEX) -> dict[str, Any]:
    """One ``results`` entry, with every field the Hub documents."""
    entry: dict[str, Any] = {
        "creator": 7, "id": abs(hash(name)) % 100_000, "images": images, "last_updated": updated,
        "last_updater": 1156886, "last_updater_username": "doijanky", "name": name, "repository": 2,
        "full_size": 49_500_000, "v2": True, "tag_status": "active", "tag_last_pulled": "2024-04-01T00:00:00Z",
        "tag_last_pushed": pushed, "content_type": "image",
    }
    if media_type is not None:
        entry["media_type"] = media_type
    if digest is not None:
        entry["digest"] = digest
    return entry


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


class FakeHub(BackgroundServer):
    """A fake of Docker Hub's tag API and, for ``HEAD``s, of its registry (see the module docstring)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.host = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.host}"
        self.repositories: dict[tuple[str, str], list[dict[str, Any]]] = {
            ("library", "debian"): DEBIAN, ("someuser", "tool"): TOOL,
        }
        self.heads: dict[str, tuple[str, str]] = {"/v2/library/debian/manifests/buster": (BUSTER_DIGEST, OCI_INDEX)}
        self.seen: list[tuple[str, str]] = []
        self.throttle: dict[str, int] = {}
        """Page number → how many more times to answer 429."""
        self.next_host: str | None = None
        """Write ``next`` URLs with this host instead (a hostile or broken API)."""
        self._lock = threading.Lock()
        server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        server.daemon_threads = True
        self._serve(server)

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.throttle.clear()
            self.next_host = None

    def requests(self, method: str | None = None, prefix: str = "") -> list[str]:
        with self._lock:
            return [p for m, p in self.seen if (method is None or m == method) and p.startswith(prefix)]

    def page(self, ns: str, repo: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        tags = self.repositories.get((ns, repo))
        if tags is None:
            return 404, {"message": "httperror 404: object not found", "errinfo": {"namespace": ns,
                                                                                   "repository": repo}}, {}
        number = int(query.get("page", ["1"])[0])
        size = query.get("page_size", ["10"])[0]
        with self._lock:
            if self.throttle.get(str(number), 0) > 0:
                self.throttle[str(number)] -= 1
                return 429, {"message": "too many requests"}, {"Retry-After": "0"}
        chunk = tags[(number - 1) * PER_PAGE : number * PER_PAGE]
        base = f"http://{self.next_host or self.host}/v2/namespaces/{ns}/repositories/{repo}/tags"
        more = number * PER_PAGE < len(tags)
        return 200, {
            "count": len(tags),
            "next": f"{base}?page={number + 1}&page_size={size}" if more else None,
            "previous": f"{base}?page={number - 1}&page_size={size}" if number > 1 else None,
            "results": chunk,
        }, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self) -> None:
                with owner._lock:
                    owner.seen.append((self.command, self.path))
                parts = urllib.parse.urlsplit(self.path)
                segments = parts.path.strip("/").split("/")
                if self.command == "GET" and len(segments) == 6 and segments[:2] == ["v2", "namespaces"] \
                        and segments[3] == "repositories" and segments[5] == "tags":
                    status, body, headers = owner.page(segments[2], segments[4], urllib.parse.parse_qs(parts.query))
                    self._reply(status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
                elif parts.path == "/v2/":
                    self._reply(200, b"{}", {"Content-Type": "application/json"})
                elif parts.path in owner.heads:
                    digest, media_type = owner.heads[parts.path]
                    self._reply(200, b"{}", {"Docker-Content-Digest": digest, "Content-Type": media_type})
                else:
                    self._reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}',
                                {"Content-Type": "application/json"})

            def do_GET(self) -> None:
                self._serve()

            def do_HEAD(self) -> None:
                self._serve()

        return Handler


@pytest.fixture(scope="module")
def fake_hub_server() -> Iterator[FakeHub]:
    server = FakeHub().start()
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
