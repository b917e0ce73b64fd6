"""What a crawl is asked to cover: repositories (every tag) and single references.

From the command line, ``REPO`` without a tag means every tag of it; a tag or a
digest means that image only. ``--from FILE`` reads the same, one per line
(``#`` comments), or the JSON of ``kubectl get pods -A -o json``: every
container, init container and ephemeral container image of every pod, with
namespace, pod and container kept, so the store can name the pods that run an
infected image. Where the pod's status says which digest the node actually
pulled (``imageID``), that digest is what is judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerhound.errors import ReferenceError_, UsageError
from layerhound.sources.refs import DOCKER, ENGINE_TRANSPORTS, Reference, parse_docker_name, parse_reference
from layerhound.untrusted import JSON_ERRORS

MAX_TARGET_FILE = 64 * 1024 * 1024
"""A --from file larger than this is refused (a cluster's pod list is a few MB)."""


@dataclass(frozen=True)
class Workload:
    """Where a reference came from in a cluster."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class Target:
    """One thing to crawl."""

    text: str
    """As the user (or the pod spec) wrote it."""
    registry: str | None = None
    repository: str | None = None
    """Set for registry targets: ``docker.io``, ``library/debian``."""
    tag: str | None = None
    digest: str | None = None
    every_tag: bool = False
    """A repository without tag or digest: list its tags and crawl them."""
    workload: Workload | None = None

    @property
    def name(self) -> str | None:
        """``registry/repository`` for registry targets."""
        return f"{self.registry}/{self.repository}" if self.registry and self.repository else None


def parse_target(text: str, workload: Workload | None = None) -> Target:
    """A command-line or file entry; ``UsageError`` when it is not a reference."""
    raw = text.strip()
    try:
        reference = parse_reference(raw)
    except ReferenceError_ as exc:
        raise UsageError(str(exc)) from None
    if reference.transport in ENGINE_TRANSPORTS:
        raise UsageError(
            f"{raw}: a crawl reads registries and image files, not a local engine's one-pass export; "
            f"judge it with `layerhound scan {raw}`"
        )
    if reference.transport != DOCKER:
        return Target(raw, workload=workload)
    return _registry_target(raw, reference, workload)


def _registry_target(raw: str, reference: Reference, workload: Workload | None) -> Target:
    bare = raw.removeprefix("docker://")
    last = bare.rsplit("/", 1)[-1]
    # A bare name on the command line means the repository; in a pod spec it is what runs: :latest.
    explicit = "@" in bare or ":" in last or workload is not None
    return Target(
        raw,
        registry=reference.registry,
        repository=reference.repository,
        tag=reference.tag if explicit else None,
        digest=reference.digest,
        every_tag=not explicit,
        workload=workload,
    )


def read_targets(path: Path) -> list[Target]:
    """Targets from a file: one reference per line, or ``kubectl get pods -o json``."""
    try:
        if path.stat().st_size > MAX_TARGET_FILE:
            raise UsageError(f"--from: {path} is larger than {MAX_TARGET_FILE} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--from: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--from: {path} is not UTF-8 text") from None
    if text.lstrip().startswith("{"):
        return pod_targets(text, str(path))
    targets = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            targets.append(parse_target(entry))
        except UsageError as exc:
            raise UsageError(f"--from {path}, line {number}: {exc}") from None
    return targets


def pod_targets(text: str, where: str = "the pod list") -> list[Target]:
    """Every container image of ``kubectl get pods -A -o json`` (a List of Pods, or one Pod)."""
    try:
        document = json.loads(text)
    except JSON_ERRORS as exc:
        raise UsageError(f"--from: {where} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError(f"--from: {where} is not a Kubernetes object")
    items = document.get("items") if document.get("kind") != "Pod" else [document]
    if not isinstance(items, list):
        raise UsageError(f"--from: {where} has no 'items' (expected `kubectl get pods -A -o json`)")
    targets: list[Target] = []
    for item in items:
        if not isinstance(item, dict) or item.get("kind", "Pod") != "Pod":
            continue
        targets.extend(_pod_images(item, where))
    return targets


def _pod_images(pod: dict[str, Any], where: str) -> list[Target]:
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "?")
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
    assert isinstance(spec, dict) and isinstance(status, dict)
    pulled = {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for entry in _list(status.get(key)):
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                pulled[entry["name"]] = _pulled_digest(entry.get("imageID"))
    targets = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(key)):
            if not isinstance(container, dict) or not isinstance(container.get("image"), str):
                continue
            cname = str(container.get("name") or "?")
            image = container["image"]
            workload = Workload(namespace, name, cname)
            try:
                target = parse_target(image, workload)
            except UsageError as exc:
                raise UsageError(f"--from {where}: pod {namespace}/{name} container {cname}: {exc}") from None
            digest = pulled.get(cname)
            if digest and target.registry is not None and target.digest is None:
                target = Target(image, target.registry, target.repository, target.tag, digest, False, workload)
            targets.append(target)
    return targets


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pulled_digest(image_id: Any) -> str | None:
    """``docker-pullable://repo@sha256:…`` (or ``repo@sha256:…``) → the digest the node pulled."""
    if not isinstance(image_id, str) or "@" not in image_id:
        return None
    try:
        _registry, _repository, _tag, digest = parse_docker_name(image_id.split("://", 1)[-1])
    except ReferenceError_:
        return None
    return digest
