"""What a crawl is asked to cover: command-line entries, --from lines, kubectl pod lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerhound.crawl.targets import Workload, parse_target, pod_targets, read_targets
from layerhound.errors import UsageError

DIGEST = "sha256:" + "ab" * 32


def test_a_repository_means_every_tag_a_tag_or_digest_one_image() -> None:
    every = parse_target("debian")
    assert (every.name, every.every_tag, every.tag) == ("docker.io/library/debian", True, None)
    tagged = parse_target("docker://registry.example:5000/team/app:1.4")
    assert (tagged.name, tagged.every_tag, tagged.tag) == ("registry.example:5000/team/app", False, "1.4")
    pinned = parse_target(f"registry.example/team/app@{DIGEST}")
    assert (pinned.every_tag, pinned.tag, pinned.digest) == (False, None, DIGEST)
    local = parse_target("oci:/srv/layout:v1")
    assert local.name is None and not local.every_tag
    with pytest.raises(UsageError):
        parse_target("UPPER/Case")


def test_lines_with_comments(tmp_path: Path) -> None:
    listing = tmp_path / "repos.txt"
    listing.write_text("# what we ship\ndebian  # every tag\n\nregistry.example/team/app:2\n")
    targets = read_targets(listing)
    assert [(t.name, t.every_tag) for t in targets] == [
        ("docker.io/library/debian", True), ("registry.example/team/app", False),
    ]
    listing.write_text("debian\nnot a reference!\n")
    with pytest.raises(UsageError, match="line 2"):
        read_targets(listing)


def test_kubectl_pods_give_every_container_with_its_pod_and_the_pulled_digest() -> None:
    pods = {
        "kind": "List",
        "items": [
            {
                "kind": "Pod",
                "metadata": {"namespace": "shop", "name": "web-1"},
                "spec": {
                    "initContainers": [{"name": "migrate", "image": "registry.example/team/app:2"}],
                    "containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}],
                },
                "status": {"containerStatuses": [
                    {"name": "web", "imageID": f"docker-pullable://nginx@{DIGEST}"},
                    {"name": "side", "imageID": ""},
                ]},
            },
            {"kind": "Service", "metadata": {"name": "ignored"}},
        ],
    }
    targets = pod_targets(json.dumps(pods))
    assert [(t.workload, t.name, t.tag, t.digest, t.every_tag) for t in targets] == [
        (Workload("shop", "web-1", "migrate"), "registry.example/team/app", "2", None, False),
        (Workload("shop", "web-1", "web"), "docker.io/library/nginx", "1.25", DIGEST, False),
        (Workload("shop", "web-1", "side"), "docker.io/library/busybox", "latest", None, False),
    ]


@pytest.mark.parametrize("text", ["[1, 2]", '{"kind": "List"}', "{not json", '{"items": "x"}'])
def test_a_pod_list_that_is_not_one_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        pod_targets(text)


def test_a_json_file_is_read_as_a_pod_list(tmp_path: Path) -> None:
    path = tmp_path / "pods.json"
    path.write_text(json.dumps({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "alpine:3.19"}]}}))
    [target] = read_targets(path)
    assert target.workload == Workload("default", "p", "c") and target.tag == "3.19"


@pytest.mark.parametrize("text", ["docker-daemon:app:1", "podman:localhost/app:1"])
def test_an_engine_image_is_for_scan_not_crawl(text: str) -> None:
    with pytest.raises(UsageError, match=f"judge it with `layerhound scan {text}`"):
        parse_target(text)
