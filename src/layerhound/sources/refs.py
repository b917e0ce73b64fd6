"""Parse skopeo-style image references into a ``Reference``.

The syntax follows skopeo so users can paste what they already use:
``oci:DIR[:REF]``, ``oci-archive:FILE[:REF]``, ``docker-archive:FILE[:REF]``,
``dir:PATH``, ``docker-daemon:NAME[:TAG|@DIGEST]``, ``podman:NAME…``,
``rootfs:DIR``, ``file:PATH``, ``docker://NAME`` and a bare name (``NAME[:TAG]``,
looked for in the local engines, then the registry: see ``sources.opening``).
Unlike skopeo, host paths may contain colons: when the text after the
transport could be split in several places, the longest prefix that exists on
disk is the path (falling back to the first colon), so ``oci:/srv/a:b:tag``
works when ``/srv/a:b`` is the layout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from layerhound.errors import ReferenceError_

DOCKER = "docker"
OCI = "oci"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"
DIR = "dir"
ROOTFS = "rootfs"
HOST = "host"
FILE = "file"
DOCKER_DAEMON = "docker-daemon"
PODMAN = "podman"

TRANSPORTS = (DOCKER, DOCKER_DAEMON, PODMAN, OCI, OCI_ARCHIVE, DOCKER_ARCHIVE, DIR, ROOTFS, HOST, FILE)
"""Every transport layerhound understands, in the order shown to users."""
ENGINE_TRANSPORTS = (DOCKER_DAEMON, PODMAN)
"""Transports whose NAME is an image held by a local engine (``sources.engine``)."""

UNSUPPORTED_TRANSPORTS = ("containers-storage", "ostree", "sif", "tarball")
"""skopeo transports we recognise by name only, to say "not supported" instead
of "unknown"."""

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"

# The Docker reference grammar (distribution/reference), reduced to what we need.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_OCI_DIGEST_RE = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. Which fields are set depends on the transport.

    Local transports set ``path`` (a host path, as written) and optionally
    ``ref`` (the part after the path: a tag, a ``name:tag``, ``@N`` or a
    digest). ``docker`` sets ``registry``, ``repository``, ``tag`` and/or
    ``digest``; engine transports set ``ref`` (the name or image ID as written,
    which the engine resolves itself). ``original`` is the text the user wrote.
    """

    transport: str
    original: str
    path: str | None = None
    ref: str | None = None
    registry: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str | None:
        """``registry/repository`` for registry references, else None."""
        if self.transport != DOCKER:
            return None
        return f"{self.registry}/{self.repository}"

    @property
    def bare(self) -> bool:
        """A registry name written without ``docker://``: the local engines may hold it first."""
        return self.transport == DOCKER and not self.original.startswith("docker://")

    @property
    def source_index(self) -> int | None:
        """N for a ``docker-archive:FILE:@N`` reference, else None."""
        if self.ref is not None and self.ref.startswith("@"):
            return int(self.ref[1:])
        return None

    def with_ref(self, ref: str | None) -> str:
        """The reference text for the same path with another ``ref`` part.

        Used to label each image when a reference without REF fans out into
        several images, so the label can be pasted back as a reference.
        """
        if self.transport in ENGINE_TRANSPORTS:
            return f"{self.transport}:{ref or self.ref}"
        base = f"{self.transport}:{self.path}"
        return f"{base}:{ref}" if ref else base

    def __str__(self) -> str:
        if self.transport == DOCKER:
            text = f"docker://{self.name}"
            if self.tag:
                text += f":{self.tag}"
            if self.digest:
                text += f"@{self.digest}"
            return text
        return self.with_ref(self.ref)


def source_name(transport: str) -> str:
    """How reports name where an image was read: ``registry`` for ``docker``, else the transport."""
    return "registry" if transport == DOCKER else transport


def parse_reference(text: str) -> Reference:
    """Parse one reference; raise ``ReferenceError_`` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ReferenceError_("empty image reference")
    text = text.strip()
    prefix, sep, rest = text.partition(":")
    if prefix == HOST and sep and rest and not rest.startswith("/"):
        sep = ""  # host:5000/repo is a registry on the machine named host, not the host: transport
    if sep and prefix in TRANSPORTS:
        return _parse_transport(prefix, rest, text)
    if sep and prefix in UNSUPPORTED_TRANSPORTS:
        raise ReferenceError_(
            f"transport {prefix!r} is not supported in {text!r}; supported: {_transport_list()}"
        )
    if sep and "/" not in prefix:
        _refuse_likely_typo(prefix, rest, text)
    try:
        registry, repository, tag, digest = parse_docker_name(text)
    except ReferenceError_ as exc:
        if sep and "/" not in prefix and "." not in prefix:
            raise ReferenceError_(
                f"unknown transport {prefix!r} in {text!r}; supported: {_transport_list()} "
                f"(or a registry name such as alpine:3.19)"
            ) from exc
        raise
    return Reference(DOCKER, text, registry=registry, repository=repository, tag=tag, digest=digest)


def _transport_list() -> str:
    return ", ".join(f"{t}://NAME" if t == DOCKER else f"{t}:" for t in TRANSPORTS)


def _refuse_likely_typo(prefix: str, rest: str, text: str) -> None:
    """``oci-archve:img.tar`` is valid Docker Hub syntax but surely a typo.

    Refuse it when the prefix is close to a transport name, or when the text
    after the colon is an existing archive file or OCI layout (nobody tags an
    image ``img.tar``; a plain ``debian:12`` with a ``12`` directory nearby
    still parses as a registry name).
    """
    import difflib  # only a mistyped transport needs it

    close = difflib.get_close_matches(prefix, TRANSPORTS + UNSUPPORTED_TRANSPORTS, n=1, cutoff=0.75)
    looks_local = bool(rest) and (
        (rest.endswith((".tar", ".tar.gz", ".tgz")) and os.path.isfile(rest))
        or os.path.isfile(os.path.join(rest, "oci-layout"))
    )
    if close or looks_local:
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ReferenceError_(
            f"unknown transport {prefix!r} in {text!r}{hint}; supported: {_transport_list()}"
        )


def _parse_transport(transport: str, rest: str, text: str) -> Reference:
    if transport == DOCKER:
        if not rest.startswith("//"):
            raise ReferenceError_(f"registry references are written docker://NAME, not {text!r}")
        registry, repository, tag, digest = parse_docker_name(rest[2:])
        return Reference(DOCKER, text, registry=registry, repository=repository, tag=tag, digest=digest)
    if transport in ENGINE_TRANSPORTS:
        return _parse_engine(transport, rest, text)
    if transport == HOST:
        return Reference(HOST, text, path=rest or "/")
    if not rest:
        raise ReferenceError_(f"{transport}: needs a path, e.g. {transport}:/path")
    if transport in (ROOTFS, FILE, DIR):
        return Reference(transport, text, path=rest)
    path, ref = split_path(rest)
    if not path:
        raise ReferenceError_(f"{transport}: needs a path before the colon in {text!r}")
    if ref is not None:
        ref = _check_ref(transport, ref, text)
    return Reference(transport, text, path=path, ref=ref)


_IMAGE_ID_RE = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")


def _parse_engine(transport: str, rest: str, text: str) -> Reference:
    """``docker-daemon:NAME[:TAG|@DIGEST]`` or an image ID (``sha256:<hex>``, or its first 12+ hex digits)."""
    if not rest:
        raise ReferenceError_(f"{transport}: needs an image name or ID, e.g. {transport}:alpine:3.19")
    if _IMAGE_ID_RE.fullmatch(rest):
        return Reference(transport, text, ref=rest)
    registry, repository, tag, digest = parse_docker_name(rest)
    return Reference(transport, text, ref=rest, registry=registry, repository=repository, tag=tag, digest=digest)


def split_path(rest: str) -> tuple[str, str | None]:
    """Split ``PATH[:REF]`` where PATH itself may contain colons.

    The longest prefix (ending at a colon, or the whole text) that exists on
    disk is the path; when none exists, split at the first colon so the error
    names the path the user most likely meant.
    """
    cuts = [i for i, c in enumerate(rest) if c == ":"]
    for cut in [len(rest), *reversed(cuts)]:
        if os.path.lexists(rest[:cut]):
            return rest[:cut], (rest[cut + 1 :] if cut < len(rest) else None)
    if cuts:
        return rest[: cuts[0]], rest[cuts[0] + 1 :]
    return rest, None


def _check_ref(transport: str, ref: str, text: str) -> str:
    if not ref:
        raise ReferenceError_(f"empty reference after the path in {text!r}")
    if transport == DOCKER_ARCHIVE:
        if ref.startswith("@"):
            if not ref[1:].isdigit():
                raise ReferenceError_(f"docker-archive source index must be @N (N >= 0), not {ref!r}")
            return ref
        try:
            _registry, _repository, _tag, digest = parse_docker_name(ref)
        except ReferenceError_ as exc:
            raise ReferenceError_(f"docker-archive: {ref!r} is not a name:tag or @N") from exc
        if digest:
            raise ReferenceError_(f"docker-archive: select an image by name:tag or @N, not a digest ({ref!r})")
        return ref
    # oci / oci-archive: a ref.name annotation (free-form) or a digest
    if ref.startswith(("sha256:", "sha512:")) and not _OCI_DIGEST_RE.fullmatch(ref):
        raise ReferenceError_(f"{transport}: malformed digest {ref!r}")
    return ref


def parse_docker_name(text: str) -> tuple[str, str, str | None, str | None]:
    """Parse ``[HOST/]REPO[:TAG][@DIGEST]`` → (registry, repository, tag, digest).

    Applies Docker's normalisation: no host means Docker Hub (``docker.io``),
    and a single-component Hub name lives under ``library/``. A reference with
    neither tag nor digest gets ``latest``.
    """
    original = text
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ReferenceError_(f"invalid digest {digest!r} in {original!r}")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise ReferenceError_(f"invalid tag {tag!r} in {original!r}")
    registry = DEFAULT_REGISTRY
    first, sep, remainder = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN_RE.fullmatch(first):
            raise ReferenceError_(f"invalid registry host {first!r} in {original!r}")
        registry, text = first, remainder
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if not text or not _PATH_RE.fullmatch(text):
        raise ReferenceError_(
            f"invalid image name {original!r} (repository names are lowercase "
            f"letters, digits and separators)"
        )
    if registry == DEFAULT_REGISTRY and "/" not in text:
        text = f"library/{text}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return registry, text, tag, digest


def normalize_name_tag(text: str) -> str | None:
    """``alpine:3`` → ``docker.io/library/alpine:3``; None when unparseable.

    Used to compare a user's ``name:tag`` with the RepoTags of an archive,
    which tools write either short (``docker save``) or long (skopeo).
    """
    try:
        registry, repository, tag, digest = parse_docker_name(text)
    except ReferenceError_:
        return None
    if digest is not None:
        return None
    return f"{registry}/{repository}:{tag}"
