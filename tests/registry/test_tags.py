"""``layerhound tags`` against real registries (Debian's ``docker-registry``, distribution 2.8).

A repository ``test/history`` is filled with skopeo: single-platform images
whose configs carry distinct ``created`` times (one with nine fractional
digits, one with a +01:00 offset, one with an empty ``created``), a
two-platform index pushed under two tags, and a Docker v2 schema 2
conversion. Registries keep no push dates, so every date comes from the
image config (``date_source`` "created"). Requests are counted at the fault
proxy; distribution 2.8 ignores ``n``/``last``, so paging is scripted there.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.registry.client import digest_of
from layerhound.registry.tags import DateWindow, TagInfo, list_tag_history, parse_date_bound, tag_history
from layerhound.report.tags import load_tags_schema
from layerhound.sources.manifest import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.registry.conftest import PASSWORD, USER, ImageSet, fast_options
from tests.support.imagewriter import ImageSpec, Layer, write_oci, write_oci_index
from tests.support.registry import Fault, FaultProxy, Pki, RegistryServer, push

REPO = "test/history"
UTC = datetime.UTC


@dataclass(frozen=True)
class Pushed:
    digest: str
    date: str | None
    """What ``date`` must say in the JSON (UTC, ``Z``)."""
    platforms: list[str]
    media_type: str


@dataclass(frozen=True)
class History:
    tags: dict[str, Pushed]
    amd64_digest: str
    arm64_digest: str
    """The platform manifests of the index (``v2.0``/``latest``)."""
    configs: frozenset[str]
    """The config digest of every image manifest pushed."""


def _image(name: str, created: str, **platform: Any) -> ImageSpec:
    return ImageSpec([Layer.files({"/etc/hostname": f"{name}\n"})], created=created, **platform)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, anonymous_registry: RegistryServer) -> History:
    layout = tmp_path_factory.mktemp("history") / "layout"
    v10 = write_oci(layout, _image("v1.0", "2023-06-01T10:00:00Z"), tag="v1.0")
    v11 = write_oci(layout, _image("v1.1", "2024-02-15T08:30:00.123456789Z"), tag="v1.1")  # Go writes nanoseconds
    rc1 = write_oci(layout, _image("rc1", "2024-03-29T00:00:00+01:00"), tag="rc1")  # = 2024-03-28T23:00:00Z
    nodate = write_oci(layout, _image("nodate", ""), tag="nodate")
    index = write_oci_index(
        layout,
        [_image("v2.0", "2024-03-09T12:00:00Z"),
         _image("v2.0-arm", "2024-03-09T12:05:00Z", architecture="arm64", variant="v8")],
        tag="v2.0",
        attestations=True,  # BuildKit-style attestation manifests: not a platform
    )
    for tag in ("v1.0", "v1.1", "rc1", "nodate"):
        push(f"oci:{layout}:{tag}", anonymous_registry, REPO, tag)
    push(f"oci:{layout}:v2.0", anonymous_registry, REPO, "v2.0", all_images=True)
    push(f"oci:{layout}:v2.0", anonymous_registry, REPO, "latest", all_images=True)
    push(f"oci:{layout}:v1.1", anonymous_registry, REPO, "v1.1-docker", fmt="v2s2")
    with fast_options(anonymous_registry.host) as options:
        converted = options.client(anonymous_registry.host).get_manifest(REPO, "v1.1-docker")
    assert converted.digest == digest_of(converted.data) != v11.manifest_digest
    both = ["linux/amd64", "linux/arm64/v8"]
    assert v10.manifest_digest and v11.manifest_digest and rc1.manifest_digest and nodate.manifest_digest
    return History(
        tags={
            "v1.0": Pushed(v10.manifest_digest, "2023-06-01T10:00:00Z", ["linux/amd64"], OCI_MANIFEST),
            "v1.1": Pushed(v11.manifest_digest, "2024-02-15T08:30:00.123456Z", ["linux/amd64"], OCI_MANIFEST),
            "v1.1-docker": Pushed(converted.digest, "2024-02-15T08:30:00.123456Z", ["linux/amd64"], DOCKER_MANIFEST),
            "rc1": Pushed(rc1.manifest_digest, "2024-03-28T23:00:00Z", ["linux/amd64"], OCI_MANIFEST),
            "nodate": Pushed(nodate.manifest_digest, None, ["linux/amd64"], OCI_MANIFEST),
            "v2.0": Pushed(index.digest, "2024-03-09T12:05:00Z", both, OCI_INDEX),
            "latest": Pushed(index.digest, "2024-03-09T12:05:00Z", both, OCI_INDEX),
        },
        amd64_digest=index.images[0].manifest_digest or "",
        arm64_digest=index.images[1].manifest_digest or "",
        configs=frozenset(
            [i.config_digest for i in (v10, v11, rc1, nodate, *index.images)]
            + [json.loads(converted.data)["config"]["digest"]]
        ),
    )


NEWEST_FIRST = ["rc1", "latest", "v2.0", "v1.1", "v1.1-docker", "v1.0", "nodate"]


def tags_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """``layerhound tags --format json`` in process: (exit status, validated document, stderr)."""
    status = main(["tags", "--format", "json", *args])
    captured = capsys.readouterr()
    document: dict[str, Any] = json.loads(captured.out) if captured.out.strip() else {}
    if document:
        jsonschema.validate(document, load_tags_schema())
    return status, document, captured.err


def rows(document: dict[str, Any]) -> list[tuple[str, str | None, str | None, str | None, list[str]]]:
    return [(t["name"], t["digest"], t["date"], t["date_source"], t["platforms"]) for t in document["tags"]]


def expected(history: History, *names: str) -> list[tuple[str, str | None, str | None, str | None, list[str]]]:
    return [
        (n, history.tags[n].digest, history.tags[n].date, "created" if history.tags[n].date else None,
         history.tags[n].platforms)
        for n in names
    ]


@pytest.fixture
def repo_proxy(proxy: FaultProxy, history: History) -> Iterator[FaultProxy]:
    """The anonymous registry's proxy, once ``test/history`` is filled."""
    yield proxy


def test_lists_every_tag_with_digest_date_and_platforms(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, history: History, no_docker_config: Path
) -> None:
    host = anonymous_registry.host
    status, document, err = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}")
    assert status == 0, err
    assert err == ""
    assert document["repository"] == f"{host}/{REPO}"
    assert document["source"] == "registry"
    assert rows(document) == expected(history, *NEWEST_FIRST)
    assert {t["name"]: t["media_type"] for t in document["tags"]} == {
        n: p.media_type for n, p in history.tags.items()
    }
    assert document["counts"] == {
        "listed": 7, "shown": 7, "excluded_by_name": 0, "excluded_by_platform": 0, "excluded_by_date": 0,
        "excluded_undated": 0, "errors": 0,
    }
    assert document["filters"] == {"since": None, "until": None, "tags": [], "platform": "all", "dates": True}


def test_table_says_where_dates_come_from(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, history: History, no_docker_config: Path
) -> None:
    host = anonymous_registry.host
    status = main(["tags", "--insecure-registry", host, f"docker://{host}/{REPO}", "--since", "2024-01-01"])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    row = next(line for line in lines if " v2.0 " in line)
    assert "2024-03-09 12:05:00Z" in row and "created" in row
    assert history.tags["v2.0"].digest in row and "linux/amd64, linux/arm64/v8" in row
    names = [n for line in lines for n in NEWEST_FIRST if re.search(rf"│ {re.escape(n)} +│", line)]
    assert names == ["rc1", "latest", "v2.0", "v1.1", "v1.1-docker"]
    assert "5 of 7 tags shown (1 outside --since/--until; 1 excluded for lack of a date)" in out
    assert "image config's build time" in out


@pytest.mark.parametrize(
    ("window", "shown", "by_date"),
    [
        # whole days, both bounds inclusive; rc1 (2024-03-29T00:00+01:00) is the 28th in UTC
        (["--since", "2024-03-01", "--until", "2024-03-28"], ["rc1", "latest", "v2.0"], 3),
        (["--since", "2024-03-29"], [], 6),
        (["--until", "2024-02-15"], ["v1.1", "v1.1-docker", "v1.0"], 3),
        # date-times: an instant on the bound is inside
        (["--since", "2024-03-09T12:05:00Z", "--until", "2024-03-09T12:05:00Z"], ["latest", "v2.0"], 4),
        (["--until", "2024-03-09T12:04:59Z", "--since", "2024-02-15T08:30:00.123456Z"], ["v1.1", "v1.1-docker"], 4),
        # an offset moves the instant: 13:05+01:00 is 12:05Z
        (["--since", "2024-03-09T13:05:00+01:00"], ["rc1", "latest", "v2.0"], 3),
        # no offset: UTC
        (["--since", "2024-03-28T23:00"], ["rc1"], 5),
    ],
)
def test_since_until_select_by_created(
    capsys: pytest.CaptureFixture[str], anonymous_registry: RegistryServer, history: History, no_docker_config: Path,
    window: list[str], shown: list[str], by_date: int,
) -> None:
    host = anonymous_registry.host
    status, document, _ = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}", *window)
    assert status == 0
    assert rows(document) == expected(history, *shown)
    assert document["counts"]["excluded_undated"] == 1  # "nodate": an empty created
    assert document["counts"]["excluded_by_date"] == by_date


def test_tags_glob_selects_names(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, history: History, no_docker_config: Path
) -> None:
    host = repo_proxy.host
    status, document, _ = tags_cli(
        capsys, "--insecure-registry", host, f"docker://{host}/{REPO}", "--tags", "v1.*", "--tags", "LATEST",
        "--tags", "r?1",
    )
    assert status == 0
    assert [t["name"] for t in document["tags"]] == ["rc1", "v1.1", "v1.1-docker", "v1.0"]  # case-sensitive
    assert document["counts"]["excluded_by_name"] == 3
    assert document["filters"]["tags"] == ["v1.*", "LATEST", "r?1"]
    # nothing is fetched for the tags the globs leave out
    assert repo_proxy.count("HEAD", "/manifests/") == 4
    for name in ("latest", "v2.0", "nodate"):
        assert repo_proxy.count(None, f"/manifests/{name}$") == 0


@pytest.mark.parametrize(("platform", "date"), [("linux/arm64", "2024-03-09T12:05:00Z"),
                                                ("linux/amd64", "2024-03-09T12:00:00Z")])
def test_platform_keeps_tags_with_that_platform(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, history: History, no_docker_config: Path,
    platform: str, date: str,
) -> None:
    host = repo_proxy.host
    status, document, _ = tags_cli(
        capsys, "--insecure-registry", host, f"docker://{host}/{REPO}", "--platform", platform, "--tags", "v2.0",
        "--tags", "v1.0",
    )
    assert status == 0
    if platform == "linux/arm64":
        assert rows(document) == [("v2.0", history.tags["v2.0"].digest, date, "created", ["linux/arm64/v8"])]
        assert document["counts"]["excluded_by_platform"] == 1
        # only the arm64 manifest of the index was fetched
        assert repo_proxy.count("GET", f"/manifests/{history.amd64_digest}") == 0
        assert repo_proxy.count("GET", f"/manifests/{history.arm64_digest}") == 1
    else:
        # the index's date is that of the platform asked for
        assert [(t["name"], t["date"], t["platforms"]) for t in document["tags"]] == [
            ("v2.0", date, ["linux/amd64"]), ("v1.0", "2023-06-01T10:00:00Z", ["linux/amd64"]),
        ]


def test_each_digest_is_fetched_once_and_tags_only_headed(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, history: History, no_docker_config: Path
) -> None:
    host = repo_proxy.host
    status, _, _ = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}")
    assert status == 0
    for name in history.tags:
        assert repo_proxy.count("HEAD", f"/manifests/{re.escape(name)}$") == 1
        assert repo_proxy.count("GET", f"/manifests/{re.escape(name)}$") == 0  # GETs are by digest only
    manifests = [s.path for s in repo_proxy.matching("GET", "/manifests/")]
    assert len(manifests) == len(set(manifests))
    # 6 distinct tag digests (v2.0 and latest share the index) + the index's 2 platform manifests
    assert len(manifests) == 6 + 2
    assert repo_proxy.count("GET", f"/manifests/{history.tags['v2.0'].digest}") == 1
    blobs = [s.path.rsplit("/", 1)[1] for s in repo_proxy.matching("GET", "/blobs/")]
    assert len(blobs) == len(set(blobs))  # each config once (v1.1-docker may share v1.1's), never a layer
    assert set(blobs) == history.configs


def test_no_dates_fetches_only_indexes(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, history: History, no_docker_config: Path
) -> None:
    host = repo_proxy.host
    status, document, _ = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}", "--no-dates")
    assert status == 0
    assert [(t["name"], t["digest"], t["date"], t["platforms"]) for t in document["tags"]] == [
        (n, history.tags[n].digest, None, history.tags[n].platforms if n in ("latest", "v2.0") else [])
        for n in sorted(history.tags)
    ]
    assert document["filters"]["dates"] is False
    assert [s.path for s in repo_proxy.matching("GET", "/manifests/")] == [
        f"/v2/{REPO}/manifests/{history.tags['v2.0'].digest}"
    ]
    assert repo_proxy.count("GET", "/blobs/") == 0

    status, _, err = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}", "--no-dates",
                              "--since", "2024-01-01")
    assert status == 2
    assert err.strip() == "layerhound: error: --since/--until need dates: they cannot be combined with --no-dates"


def test_link_paging_returns_every_tag_once(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, history: History, no_docker_config: Path
) -> None:
    """distribution 2.8 ignores ``n``/``last``: the proxy answers with ``Link`` pages as newer registries do.

    The second page repeats the last tag of the first (a registry racing a
    push can); it is listed once.
    """
    base = f"/v2/{REPO}/tags/list"

    def page(query: str, tags: list[str], following: str | None) -> Fault:
        headers = {"Link": f'<{base}?{following}>; rel="next"'} if following else {}
        body = json.dumps({"name": REPO, "tags": tags}).encode()
        return Fault("status", rf"/tags/list{re.escape(query)}$", status=200, headers=headers, body=body)

    repo_proxy.add(page("", ["latest", "nodate", "rc1"], "last=rc1&n=3"))
    repo_proxy.add(page("?last=rc1&n=3", ["rc1", "v1.0", "v1.1"], "last=v1.1&n=3"))
    repo_proxy.add(page("?last=v1.1&n=3", ["v1.1-docker", "v2.0"], None))
    host = repo_proxy.host
    status, document, _ = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}")
    assert status == 0
    assert rows(document) == expected(history, *NEWEST_FIRST)
    assert document["counts"]["listed"] == 7
    assert [s.path for s in repo_proxy.matching("GET", "/tags/list")] == [
        base, f"{base}?last=rc1&n=3", f"{base}?last=v1.1&n=3",
    ]
    for name in history.tags:
        assert repo_proxy.count("HEAD", f"/manifests/{re.escape(name)}$") == 1


def test_a_tag_that_cannot_be_read_keeps_its_place(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, history: History, no_docker_config: Path
) -> None:
    """A config whose bytes do not match its digest fails that tag only, and says so."""
    v10 = history.tags["v1.0"]
    with fast_options(repo_proxy.host) as options:
        manifest = json.loads(options.client(repo_proxy.host).get_manifest(REPO, v10.digest).data)
    repo_proxy.reset()
    repo_proxy.add(Fault("corrupt", f"/blobs/{manifest['config']['digest']}", times=-1))
    host = repo_proxy.host
    status, document, err = tags_cli(capsys, "--insecure-registry", host, f"docker://{host}/{REPO}",
                                     "--tags", "v1.*")
    assert status == 0
    [broken] = [t for t in document["tags"] if t["name"] == "v1.0"]
    assert broken["digest"] == v10.digest and broken["date"] is None
    assert "digest mismatch" in broken["error"]
    assert document["counts"]["errors"] == 1
    assert "layerhound: warning: v1.0: " in err and "digest mismatch" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2024-13-01"], "--since: '2024-13-01' is not a date (YYYY-MM-DD) or an ISO 8601 date-time"),
        (["--until", "yesterday"], "--until: 'yesterday' is not a date (YYYY-MM-DD) or an ISO 8601 date-time"),
        (["--since", "2024-03-02", "--until", "2024-03-01"], "--since is after --until"),
        (["--platform", "amd64"], "platform must be 'all' or OS/ARCH[/VARIANT]"),
    ],
)
def test_bad_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, no_docker_config: Path,
    args: list[str], message: str,
) -> None:
    status, document, err = tags_cli(capsys, "--insecure-registry", repo_proxy.host,
                                     f"docker://{repo_proxy.host}/{REPO}", *args)
    assert status == 2
    assert document == {}
    assert err.startswith(f"layerhound: error: {message}") and err.count("\n") == 1
    assert repo_proxy.seen == []  # refused before anything was asked


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("docker://{host}/test/nope", "repository not found: the tags of {host}/test/nope"),
        ("docker://{host}/test/history:v1.0", "give a repository without a tag or digest"),
        ("oci:/tmp/layout", "tags are listed for registry repositories: docker://HOST/NAME or a Docker Hub name"),
        ("docker://{host}/Test/Upper", "invalid image name"),
    ],
)
def test_bad_repositories_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], repo_proxy: FaultProxy, no_docker_config: Path, ref: str, message: str
) -> None:
    host = repo_proxy.host
    status, document, err = tags_cli(capsys, "--insecure-registry", host, ref.format(host=host))
    assert status == 2
    assert document == {}
    assert err.startswith("layerhound: error: ") and message.format(host=host) in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("setup", ["basic", "token"])
def test_authenticated_registries_over_tls(
    capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, test_images: ImageSet, pki: Pki,
    no_docker_config: Path, monkeypatch: pytest.MonkeyPatch, setup: str,
) -> None:
    registry: RegistryServer = request.getfixturevalue(f"{setup}_registry")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert))
    monkeypatch.setenv("LAYERHOUND_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("LAYERHOUND_REGISTRY_PASSWORD", PASSWORD)
    status, document, err = tags_cli(capsys, f"docker://{registry.host}/test/multi")
    assert status == 0, err
    assert rows(document) == [
        ("latest", test_images.multi.digest, "2024-03-29T00:00:00Z", "created", ["linux/amd64", "linux/arm64/v8"])
    ]
    assert PASSWORD not in json.dumps(document) + err

    monkeypatch.delenv("LAYERHOUND_REGISTRY_PASSWORD")
    monkeypatch.delenv("LAYERHOUND_REGISTRY_USERNAME")
    status, document, err = tags_cli(capsys, f"docker://{registry.host}/test/multi")
    assert status == 2 and document == {}
    assert err.startswith("layerhound: error: unauthorized") and err.count("\n") == 1


def test_library_api(anonymous_registry: RegistryServer, history: History) -> None:
    with fast_options(anonymous_registry.host) as options:
        tags = list_tag_history(
            f"docker://{anonymous_registry.host}/{REPO}", options, since=datetime.date(2024, 3, 9),
            until="2024-03-09", globs=["v*", "latest"],
        )
        assert tags == [
            TagInfo("latest", history.tags["latest"].digest, datetime.datetime(2024, 3, 9, 12, 5, tzinfo=UTC),
                    "created", ("linux/amd64", "linux/arm64/v8"), OCI_INDEX),
            TagInfo("v2.0", history.tags["v2.0"].digest, datetime.datetime(2024, 3, 9, 12, 5, tzinfo=UTC),
                    "created", ("linux/amd64", "linux/arm64/v8"), OCI_INDEX),
        ]
        with pytest.raises(dataclasses.FrozenInstanceError):
            tags[0].name = "x"  # type: ignore[misc]
        history_ = tag_history(f"docker://{anonymous_registry.host}/{REPO}", options, page_size=2)
        assert history_.listed == 7 and history_.source == "registry"
        assert [t.name for t in history_.tags] == NEWEST_FIRST


def test_date_bounds() -> None:
    day = parse_date_bound("2024-03-01", end=False)
    assert day == datetime.datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_date_bound("2024-03-01", end=True) == datetime.datetime(2024, 3, 2, tzinfo=UTC)
    window = DateWindow(day, parse_date_bound("2024-03-01T10:00:00+02:00", end=True))
    assert window.contains(datetime.datetime(2024, 3, 1, 8, 0, tzinfo=UTC))
    assert not window.contains(datetime.datetime(2024, 3, 1, 8, 0, 0, 1, tzinfo=UTC))
    assert window.until == datetime.datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
