"""The project's own image writer, for tests and the demo.

Images are described in memory and written in every format the sources read:
an OCI layout directory, a multi-platform index, an ``oci-archive`` and a
``docker save`` archive (legacy and the newer OCI-style layout). Output is
deterministic (fixed mtimes, numeric owners, sorted members, stable JSON), so
digests are stable across runs and machines.

    from tests.support.imagewriter import ImageSpec, Layer, file, symlink, write_oci

    base = Layer.files({"/usr/lib/liblzma.so.5.6.0": file(blob, 0o755),
                        "/usr/lib/liblzma.so.5": symlink("liblzma.so.5.6.0")})
    written = write_oci(tmp_path / "layout", ImageSpec([base]), tag="v1")
    # reference: f"oci:{tmp_path / 'layout'}:v1"

Layers are streamed through temporary files, so a whole debootstrap root
filesystem (``Layer.from_dir``) can be packed without holding it in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import zstandard

from layerhound.sources.manifest import (
    CONTAINERD_NAME,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME,
)

MTIME = 1711670400
"""2024-03-29T00:00:00Z, the day CVE-2024-3094 was disclosed: every mtime."""
CREATED = "2024-03-29T00:00:00Z"
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

Compression = Literal["gzip", "zstd", "none"]
MediaTypes = Literal["oci", "docker", "none"]
"""``oci``: OCI media types; ``docker``: Docker v2 schema 2 ones; ``none``: OCI
descriptors, but manifests and indexes without a top-level ``mediaType`` (as
umoci writes them)."""
EntryKind = Literal["file", "dir", "symlink", "hardlink", "whiteout", "opaque"]


# ---------------------------------------------------------------- layer entries


@dataclass(frozen=True)
class Spec:
    """One entry of an in-memory layer; build it with the helpers below."""

    kind: EntryKind
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    uid: int = 0
    gid: int = 0


def file(data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Spec:
    """A regular file (``str`` is encoded as UTF-8)."""
    return Spec("file", data.encode() if isinstance(data, str) else data, mode, uid=uid, gid=gid)


def directory(mode: int = 0o755, uid: int = 0, gid: int = 0) -> Spec:
    """A directory entry."""
    return Spec("dir", mode=mode, uid=uid, gid=gid)


def symlink(target: str) -> Spec:
    """A symbolic link; ``target`` is written as given (relative or absolute)."""
    return Spec("symlink", mode=0o777, target=target)


def hardlink(target: str) -> Spec:
    """A hard link to an earlier member of the same layer (an image path)."""
    return Spec("hardlink", target=target)


def whiteout() -> Spec:
    """Delete the path from lower layers (written as ``.wh.NAME``)."""
    return Spec("whiteout")


def opaque() -> Spec:
    """Hide everything lower layers put in this directory (``.wh..wh..opq``)."""
    return Spec("opaque")


def _arcname(path: str) -> str:
    name = path.strip("/")
    if not name:
        raise ValueError(f"layer entry path {path!r} names the root")
    return name


def _tarinfo(path: str, spec: Spec) -> tuple[tarfile.TarInfo, bytes | None]:
    name = _arcname(path)
    if spec.kind == "whiteout":
        head, _, base = name.rpartition("/")
        name, spec = (f"{head}/" if head else "") + f".wh.{base}", Spec("file", mode=0o644)
    elif spec.kind == "opaque":
        name, spec = f"{name}/.wh..wh..opq", Spec("file", mode=0o644)
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.mode = spec.mode
    info.uid, info.gid = spec.uid, spec.gid
    info.uname = info.gname = ""
    if spec.kind == "file":
        info.size = len(spec.data)
        return info, spec.data
    if spec.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif spec.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, spec.target
    elif spec.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, _arcname(spec.target)
    return info, None


# ---------------------------------------------------------------- layers


class Layer:
    """The content of one layer: in-memory entries, a host directory, or a raw blob."""

    def __init__(
        self,
        entries: Sequence[tuple[str, Spec]] = (),
        root: Path | None = None,
        raw: tuple[bytes, str, str] | None = None,
    ) -> None:
        self.entries = list(entries)
        self.root = root
        self.raw = raw

    @classmethod
    def files(cls, entries: Mapping[str, Spec | bytes | str]) -> Layer:
        """Entries by image path, written in the mapping's order (no implied parents).

        A plain ``bytes``/``str`` value is a regular file with mode 0644.
        """
        return cls([(path, spec if isinstance(spec, Spec) else file(spec)) for path, spec in entries.items()])

    @classmethod
    def from_dir(cls, root: Path | str) -> Layer:
        """A whole host directory (e.g. a debootstrap root) as the layer's content.

        Symlinks are stored as links (never followed), hard links as tar hard
        links, owners as the numeric uid/gid on disk; mtimes are normalised.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root} is not a directory")
        return cls(root=root)

    @classmethod
    def raw_blob(cls, blob: bytes, diff_id: str, media_type: str = OCI_LAYER_GZIP) -> Layer:
        """Bytes written as the blob verbatim (for broken or hand-made layers).

        ``diff_id`` goes into the config as is; compression settings of the
        writer do not apply.
        """
        return cls(raw=(blob, diff_id, media_type))

    def write_tar(self, out: BinaryIO) -> None:
        """Write the uncompressed layer tar to ``out``."""
        if self.raw is not None:
            raise ValueError("a raw layer has no tar form")
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for path, spec in self.entries:
                info, data = _tarinfo(path, spec)
                archive.addfile(info, io.BytesIO(data) if data is not None else None)
            if self.root is not None:
                for name in sorted(os.listdir(self.root)):
                    archive.add(self.root / name, arcname=name, recursive=True, filter=_normalise)

    def tar_bytes(self) -> bytes:
        """The uncompressed layer tar (for small layers in tests)."""
        buffer = io.BytesIO()
        self.write_tar(buffer)
        return buffer.getvalue()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = MTIME
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------- images


@dataclass
class ImageSpec:
    """An image: layers (lowest first), platform and the runtime config."""

    layers: Sequence[Layer]
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: Sequence[str] = DEFAULT_ENV
    exposed_ports: Sequence[str] = ()
    """e.g. ``["22/tcp"]``."""
    created: str = CREATED

    @property
    def platform(self) -> str:
        """``os/arch[/variant]``, as the sources report it."""
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def image_config(image: ImageSpec, diff_ids: Sequence[str]) -> dict[str, Any]:
    """The image config JSON (os/architecture/created/config/rootfs/history)."""
    runtime: dict[str, Any] = {"Env": list(image.env)}
    if image.entrypoint is not None:
        runtime["Entrypoint"] = list(image.entrypoint)
    if image.cmd is not None:
        runtime["Cmd"] = list(image.cmd)
    if image.exposed_ports:
        runtime["ExposedPorts"] = {port: {} for port in image.exposed_ports}
    config: dict[str, Any] = {
        "created": image.created,
        "architecture": image.architecture,
        "os": image.os,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": image.created, "created_by": "layerhound imagewriter"} for _ in diff_ids],
    }
    if image.variant:
        config["variant"] = image.variant
    return config


@dataclass(frozen=True)
class WrittenLayer:
    """What was written for one layer."""

    digest: str
    """Digest of the blob as stored (compressed)."""
    diff_id: str
    size: int
    media_type: str


@dataclass(frozen=True)
class WrittenImage:
    """What was written for one image; ``manifest_digest`` is None in legacy docker archives."""

    manifest_digest: str | None
    config_digest: str
    layers: list[WrittenLayer]
    platform: str
    manifest_size: int = 0

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]


@dataclass(frozen=True)
class WrittenIndex:
    """What ``write_oci_index`` wrote: the top index blob and the platform images."""

    digest: str
    size: int
    images: list[WrittenImage] = field(default_factory=list)


# ---------------------------------------------------------------- blobs


def dumps(value: Any) -> bytes:
    """Stable, compact JSON bytes (what gets hashed)."""
    return json.dumps(value, separators=(",", ":")).encode()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fileobj:
        for chunk in iter(lambda: fileobj.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def blob_file(layout: Path | str, digest: str) -> Path:
    """Where a blob lives in a layout directory (to tamper with it in tests)."""
    algo, _, hexpart = digest.partition(":")
    return Path(layout) / "blobs" / algo / hexpart


class _Blobs:
    """Content-addressed writes into ``<root>/blobs/sha256``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = blob_file(self.root, digest)
        if not (path.exists() and path.stat().st_size == len(data)):  # content-addressed: written once
            path.write_bytes(data)
        return digest, len(data)

    def put_json(self, value: Any) -> tuple[str, int]:
        return self.put(dumps(value))

    def put_path(self, path: Path) -> tuple[str, int]:
        """Move a finished temporary file into place under its digest."""
        digest, size = _sha256_file(path), path.stat().st_size
        os.replace(path, blob_file(self.root, digest))
        return digest, size

    def temp(self) -> Path:
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        os.close(fd)
        return Path(name)

    def layer(self, layer: Layer, compression: Compression, media_type: str) -> WrittenLayer:
        """Write a layer blob; stream through temp files, hash on the way."""
        if layer.raw is not None:
            blob, diff_id, raw_type = layer.raw
            digest, size = self.put(blob)
            return WrittenLayer(digest, diff_id, size, raw_type)
        tar_path = self.temp()
        with open(tar_path, "wb") as out:
            layer.write_tar(out)
        diff_id = _sha256_file(tar_path)
        if compression == "none":
            digest, size = self.put_path(tar_path)
            return WrittenLayer(digest, diff_id, size, media_type)
        packed = self.temp()
        with open(tar_path, "rb") as src, open(packed, "wb") as dst:
            if compression == "gzip":
                with gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=6) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
            elif compression == "zstd":
                zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
            else:
                raise ValueError(f"unknown compression {compression!r}")
        tar_path.unlink()
        digest, size = self.put_path(packed)
        return WrittenLayer(digest, diff_id, size, media_type)


def _types(media_types: MediaTypes, compression: Compression) -> dict[str, str]:
    if media_types == "docker":
        if compression == "zstd":
            raise ValueError("Docker media types have no zstd layer type")
        layer = DOCKER_LAYER_GZIP if compression == "gzip" else DOCKER_LAYER
        return {"manifest": DOCKER_MANIFEST, "index": DOCKER_MANIFEST_LIST, "config": DOCKER_CONFIG, "layer": layer}
    layer = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER}[compression]
    return {"manifest": OCI_MANIFEST, "index": OCI_INDEX, "config": OCI_CONFIG, "layer": layer}


def _write_image(
    blobs: _Blobs, image: ImageSpec, compression: Compression, media_types: MediaTypes
) -> tuple[WrittenImage, dict[str, Any]]:
    """Write layers, config and manifest; return the manifest's descriptor."""
    types = _types(media_types, compression)
    layers = [blobs.layer(layer, compression, types["layer"]) for layer in image.layers]
    config_digest, config_size = blobs.put_json(image_config(image, [layer.diff_id for layer in layers]))
    manifest: dict[str, Any] = {"schemaVersion": 2}
    if media_types != "none":
        manifest["mediaType"] = types["manifest"]
    manifest["config"] = {"mediaType": types["config"], "digest": config_digest, "size": config_size}
    manifest["layers"] = [
        {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size} for layer in layers
    ]
    digest, size = blobs.put_json(manifest)
    platform: dict[str, str] = {"architecture": image.architecture, "os": image.os}
    if image.variant:
        platform["variant"] = image.variant
    descriptor = {"mediaType": types["manifest"], "digest": digest, "size": size, "platform": platform}
    return WrittenImage(digest, config_digest, layers, image.platform, size), descriptor


def _attestation(blobs: _Blobs, subject: str) -> dict[str, Any]:
    """A BuildKit-style attestation manifest for ``subject`` (must be skipped by readers)."""
    statement = dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": [], "predicate": {}})
    layer_digest, layer_size = blobs.put(statement)
    config_digest, config_size = blobs.put_json(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    digest, size = blobs.put_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": layer_digest, "size": layer_size}],
        }
    )
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": size,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {"vnd.docker.reference.digest": subject, "vnd.docker.reference.type": "attestation-manifest"},
    }


def _add_to_index_json(root: Path, descriptor: dict[str, Any], tag: str | None, media_types: MediaTypes) -> None:
    """Create or extend ``index.json``; a descriptor with the same tag is replaced."""
    (root / "oci-layout").write_bytes(dumps({"imageLayoutVersion": "1.0.0"}))
    path = root / "index.json"
    index: dict[str, Any] = json.loads(path.read_bytes()) if path.exists() else {"schemaVersion": 2}
    if media_types != "none":
        index.setdefault("mediaType", OCI_INDEX)
    descriptor = dict(descriptor)
    descriptor.pop("platform", None)
    if tag is not None:
        descriptor["annotations"] = {REF_NAME: tag}
    kept = [
        d for d in index.get("manifests", [])
        if tag is None or (d.get("annotations") or {}).get(REF_NAME) != tag
    ]
    index["manifests"] = [*kept, descriptor]
    path.write_bytes(dumps(index))


# ---------------------------------------------------------------- OCI layouts


def write_oci(
    path: Path | str,
    image: ImageSpec,
    *,
    tag: str | None = "latest",
    compression: Compression = "gzip",
    media_types: MediaTypes = "oci",
) -> WrittenImage:
    """Write one image into an OCI layout directory (created or extended).

    ``tag`` becomes the ``org.opencontainers.image.ref.name`` annotation
    (``None``: untagged, reachable by digest only). Reference: ``oci:PATH:TAG``.
    """
    root = Path(path)
    blobs = _Blobs(root)
    written, descriptor = _write_image(blobs, image, compression, media_types)
    _add_to_index_json(root, descriptor, tag, media_types)
    return written


def write_oci_index(
    path: Path | str,
    images: Sequence[ImageSpec],
    *,
    tag: str | None = "latest",
    compression: Compression = "gzip",
    media_types: MediaTypes = "oci",
    attestations: bool = False,
    depth: int = 1,
) -> WrittenIndex:
    """Write a multi-platform image: platform manifests under an index blob.

    ``index.json`` points (with ``tag``) at the index, as ``skopeo copy --all``
    and BuildKit write it. ``attestations`` adds a BuildKit attestation
    manifest per platform; ``depth`` > 1 wraps the index in further indexes
    (nested indexes, as some tools produce).
    """
    root = Path(path)
    blobs = _Blobs(root)
    types = _types(media_types, compression)
    written: list[WrittenImage] = []
    children: list[dict[str, Any]] = []
    for image in images:
        one, descriptor = _write_image(blobs, image, compression, media_types)
        written.append(one)
        children.append(descriptor)
        if attestations:
            children.append(_attestation(blobs, one.manifest_digest or ""))
    descriptor: dict[str, Any] = {}
    for _ in range(max(depth, 1)):
        index: dict[str, Any] = {"schemaVersion": 2}
        if media_types != "none":
            index["mediaType"] = types["index"]
        index["manifests"] = children
        digest, size = blobs.put_json(index)
        descriptor = {"mediaType": types["index"], "digest": digest, "size": size}
        children = [descriptor]
    _add_to_index_json(root, descriptor, tag, media_types)
    return WrittenIndex(descriptor["digest"], descriptor["size"], written)


def pack_directory(source: Path | str, archive: Path | str) -> Path:
    """Tar a directory deterministically (sorted, fixed mtimes, root-owned).

    Turns a layout directory into an ``oci-archive``; used for docker
    archives too.
    """
    source, archive = Path(source), Path(archive)
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel = Path(dirpath).relative_to(source)
            for name in dirnames + sorted(filenames):
                host = Path(dirpath) / name
                if name.startswith(".tmp-"):
                    continue
                info = tar.gettarinfo(str(host), arcname=(rel / name).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
                info.mode = 0o755 if info.isdir() else 0o644
                if info.isreg():
                    with open(host, "rb") as fileobj:
                        tar.addfile(info, fileobj)
                else:
                    tar.addfile(info)
    return archive


def write_oci_archive(
    path: Path | str,
    image: ImageSpec | Sequence[ImageSpec],
    *,
    tag: str | None = "latest",
    compression: Compression = "gzip",
    media_types: MediaTypes = "oci",
) -> WrittenImage | WrittenIndex:
    """An ``oci-archive``: one image, or a multi-platform index for a sequence."""
    with tempfile.TemporaryDirectory(prefix="layerhound-oci-") as tmp:
        layout = Path(tmp) / "layout"
        written: WrittenImage | WrittenIndex
        if isinstance(image, ImageSpec):
            written = write_oci(layout, image, tag=tag, compression=compression, media_types=media_types)
        else:
            written = write_oci_index(layout, image, tag=tag, compression=compression, media_types=media_types)
        pack_directory(layout, path)
    return written


# ---------------------------------------------------------------- docker save


def write_docker_archive(
    path: Path | str,
    images: Sequence[tuple[ImageSpec, Sequence[str]]],
    *,
    layout: Literal["legacy", "oci", "crane"] = "legacy",
    config_name: str | None = None,
) -> list[WrittenImage]:
    """A ``docker save`` archive of ``(image, RepoTags)`` pairs.

    ``legacy`` is what Docker < 25 writes: uncompressed ``<id>/layer.tar``,
    ``<config hex>.json``, ``manifest.json`` and ``repositories``. ``oci`` is
    what Docker >= 25 writes: an OCI layout with uncompressed layer blobs plus
    a ``manifest.json`` whose paths point into ``blobs/sha256``. ``crane`` is
    what ``crane pull``, ko and go-containerregistry's tarball package write:
    the config as ``sha256:<hex>`` and gzip layers as ``<hex>.tar.gz`` named by
    their compressed digest. ``config_name`` (crane only) names the config
    member otherwise (``docker load`` takes any name; the image ID is the
    content's hash). References: ``docker-archive:PATH:name:tag`` or ``:@N``.
    """
    with tempfile.TemporaryDirectory(prefix="layerhound-docker-") as tmp:
        root = Path(tmp) / "archive"
        root.mkdir()
        if layout == "legacy":
            written = _write_legacy(root, images)
        elif layout == "oci":
            written = _write_docker_oci(root, images)
        elif layout == "crane":
            written = _write_crane(root, images, config_name)
        else:
            raise ValueError(f"unknown docker-archive layout {layout!r}")
        pack_directory(root, path)
    return written


def _repositories(entries: Sequence[tuple[Sequence[str], str]]) -> dict[str, dict[str, str]]:
    repositories: dict[str, dict[str, str]] = {}
    for tags, top in entries:
        for tag in tags:
            name, _, version = tag.rpartition(":")
            repositories.setdefault(name, {})[version] = top
    return repositories


def _write_legacy(root: Path, images: Sequence[tuple[ImageSpec, Sequence[str]]]) -> list[WrittenImage]:
    blobs = _Blobs(root)  # only as a temp-file and hashing helper; blobs/ is removed below
    manifest: list[dict[str, Any]] = []
    tops: list[tuple[Sequence[str], str]] = []
    written: list[WrittenImage] = []
    for image, tags in images:
        layers: list[WrittenLayer] = []
        paths: list[str] = []
        parent = ""
        for layer in image.layers:
            one = blobs.layer(layer, "none", DOCKER_LAYER)
            layer_id = hashlib.sha256(f"{parent}\n{one.diff_id}".encode()).hexdigest()
            (root / layer_id).mkdir(exist_ok=True)
            os.replace(blob_file(root, one.digest), root / layer_id / "layer.tar")
            (root / layer_id / "VERSION").write_bytes(b"1.0")
            layer_json = {"id": layer_id, "parent": parent} if parent else {"id": layer_id}
            (root / layer_id / "json").write_bytes(dumps(layer_json))
            layers.append(WrittenLayer(one.diff_id, one.diff_id, one.size, DOCKER_LAYER))
            paths.append(f"{layer_id}/layer.tar")
            parent = layer_id
        config = dumps(image_config(image, [layer.diff_id for layer in layers]))
        config_hex = hashlib.sha256(config).hexdigest()
        (root / f"{config_hex}.json").write_bytes(config)
        manifest.append({"Config": f"{config_hex}.json", "RepoTags": list(tags) or None, "Layers": paths})
        tops.append((tags, parent))
        written.append(WrittenImage(None, f"sha256:{config_hex}", layers, image.platform))
    shutil.rmtree(root / "blobs")
    (root / "manifest.json").write_bytes(dumps(manifest))
    (root / "repositories").write_bytes(dumps(_repositories(tops)))
    return written


def _write_crane(
    root: Path, images: Sequence[tuple[ImageSpec, Sequence[str]]], config_name: str | None
) -> list[WrittenImage]:
    blobs = _Blobs(root)  # hashing and gzip; the blobs move to crane's names below
    manifest: list[dict[str, Any]] = []
    written: list[WrittenImage] = []
    for image, tags in images:
        layers = [blobs.layer(layer, "gzip", DOCKER_LAYER_GZIP) for layer in image.layers]
        paths = []
        for layer in layers:
            name = f"{layer.digest.split(':', 1)[1]}.tar.gz"
            os.replace(blob_file(root, layer.digest), root / name)
            paths.append(name)
        config = dumps(image_config(image, [layer.diff_id for layer in layers]))
        config_hex = hashlib.sha256(config).hexdigest()
        name = config_name or f"sha256:{config_hex}"
        (root / name).write_bytes(config)
        manifest.append({"Config": name, "RepoTags": list(tags), "Layers": paths})
        written.append(WrittenImage(None, f"sha256:{config_hex}", layers, image.platform))
    shutil.rmtree(root / "blobs")
    (root / "manifest.json").write_bytes(dumps(manifest))
    return written


def _write_docker_oci(root: Path, images: Sequence[tuple[ImageSpec, Sequence[str]]]) -> list[WrittenImage]:
    blobs = _Blobs(root)
    manifest: list[dict[str, Any]] = []
    descriptors: list[dict[str, Any]] = []
    tops: list[tuple[Sequence[str], str]] = []
    written: list[WrittenImage] = []
    for image, tags in images:
        one, descriptor = _write_image(blobs, image, "none", "oci")
        descriptor.pop("platform")
        for tag in tags or [None]:
            entry = dict(descriptor)
            if tag is not None:
                full = tag if "/" in tag.split(":")[0] else f"docker.io/library/{tag}"
                entry["annotations"] = {CONTAINERD_NAME: full, REF_NAME: tag.rpartition(":")[2]}
            descriptors.append(entry)
        manifest.append(
            {
                "Config": "blobs/" + one.config_digest.replace(":", "/"),
                "RepoTags": list(tags) or None,
                "Layers": ["blobs/" + digest.replace(":", "/") for digest in one.layer_digests],
            }
        )
        tops.append((tags, one.layer_digests[-1].partition(":")[2] if one.layers else ""))
        written.append(one)
    (root / "oci-layout").write_bytes(dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_bytes(dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}))
    (root / "manifest.json").write_bytes(dumps(manifest))
    (root / "repositories").write_bytes(dumps(_repositories(tops)))
    return written


# ---------------------------------------------------------------- reading back


def read_layer(layer: Any) -> list[tuple[str, str, bytes]]:
    """``(path, type, bytes)`` of every member of a source's layer, read whole.

    Iterates to the end so the layer's digest checks run, as a scan would.
    """
    return [(m.entry.path, m.entry.type.value, m.read()) for m in layer.members()]


def tamper(path: Path | str, offset: int | None = None) -> None:
    """Flip one byte of a file in place (the middle one by default)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    index = len(data) // 2 if offset is None else offset
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def tamper_member(archive: Path | str, name: str, offset: int | None = None) -> None:
    """Flip one byte of a member inside an (uncompressed) tar file, in place."""
    with tarfile.open(archive) as tar:
        info = tar.getmember(name)
    tamper(archive, info.offset_data + (info.size // 2 if offset is None else offset))
