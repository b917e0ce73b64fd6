"""The data that flows between the stages of a scan.

Everything here is a plain, frozen value so that a layer's results can later be
cached by layer digest and merged again without re-reading the blob.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

REPLACED_IN_LAYER = "replaced_later_in_layer"
"""Evidence key of a finding about a copy of a path that a later entry of the same layer replaced
(unpacking keeps the last): history, never in the final filesystem."""


class EntryType(str, enum.Enum):
    """What a tar member (or a directory entry of a root filesystem) is."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    OTHER = "other"  # devices, fifos, sockets: recorded, never read


@dataclass(frozen=True, slots=True)
class Entry:
    """One member of one layer, as the tar header describes it.

    ``path`` is always absolute and normalised inside the image ("/usr/lib/x"),
    never a host path. Whiteout markers are not entries: the walker turns them
    into ``LayerResult.whiteouts`` and ``LayerResult.opaque_dirs``.
    """

    path: str
    type: EntryType
    size: int = 0
    mode: int = 0
    linkname: str = ""
    """Symlink target as written (may be relative), or the absolute in-image
    path of the hard link's target member in the same layer."""


class Kind(str, enum.Enum):
    """The kinds of evidence of the JSON contract."""

    PACKAGE = "package"
    HASH = "hash"
    SIGNATURE = "signature"
    STRUCTURE = "structure"
    SOURCE = "source"
    ARCHIVE = "archive"


class Indicates(str, enum.Enum):
    """What a finding means for the verdict; the assessment reads only this."""

    IMPLANT = "implant"
    """A built, loadable implant (liblzma with the backdoor)."""
    PAYLOAD = "payload"
    """Implant material that cannot be loaded as is (the payload object, a
    packaged implant inside an archive): backdoored but never reachable."""
    SOURCE = "source"
    """Backdoored source material: tarballs, the trigger m4, payload test files."""
    AFFECTED_VERSION = "affected-version"
    """A package database names an affected version; says nothing about bytes."""
    INCONSISTENCY = "inconsistency"
    """The package database and the bytes disagree. Informational: the verdict
    follows the bytes, this says what a version-matching scanner would get wrong."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of evidence about one file in one layer."""

    rule: str
    kind: Kind
    indicates: Indicates
    path: str
    layer: str | None = None
    """Digest of the layer the file came from (None for sources without one)."""
    sha256: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    in_final_fs: bool = True
    """Filled by the merged view: False when an upper layer deleted or replaced
    the file."""
    detector: str = ""
    """The detector that produced it (set by the layer walk; "" for findings of
    the assessment itself). Stored results are keyed per detector by this."""



@dataclass(frozen=True, slots=True)
class Fact:
    """Something true about one file that is not evidence by itself.

    An ELF's DT_NEEDED list, the loader's configuration, the xz packages a
    database claims: the assessment combines facts of the final filesystem
    (which library sshd would load, whether a database contradicts the bytes).
    """

    collector: str
    """Which detector produced it; the assessment looks facts up by this name."""
    path: str
    data: dict[str, Any] = field(default_factory=dict)
    layer: str | None = None
    detector: str = ""
    """The detector that produced it (set by the layer walk)."""



@dataclass(slots=True)
class LayerStats:
    """How much of a layer was looked at; proves detectors actually ran."""

    entries: int = 0
    files_read: int = 0
    elf_files: int = 0
    bytes_uncompressed: int = 0
    not_walked: list[str] = field(default_factory=list)
    """What a host directory walk left out, and why: pseudo filesystems, other mounts,
    unreadable files and directories (``path: reason``)."""
    skipped_oversize: list[str] = field(default_factory=list)
    """Files a detector wanted but that exceed its size bound; an archive's
    member is named ``/archive/path!/member``."""
    detector_errors: list[str] = field(default_factory=list)
    """Detector failures on single files; the scan goes on and reports them."""
    compression: str = ""
    archives: int = 0
    """Archives (deb, rpm, tar, zip) found in the layer or nested in one and
    opened, including those found corrupt (see ``archive_notes``)."""
    archive_members: int = 0
    """Regular files inside those archives. The counters above count only the
    layer's own files; these count the archives' members."""
    archive_members_read: int = 0
    archive_elf_files: int = 0
    archive_bytes: int = 0
    """Uncompressed bytes of the archives' regular-file members."""
    archive_notes: list[str] = field(default_factory=list)
    """Archives not opened or not read to the end: over a bound, corrupt or
    unsupported, and members not judged (encrypted); never silent."""
    findings_over_bound: int = 0
    """Findings of this layer past ``MAX_FINDINGS``: counted, not listed (the verdict says so)."""


MAX_FINDINGS = 10_000
"""Findings one layer lists. A crafted layer of 200,000 hard links to one implant (or as many
tiny files matching a signature) costs a megabyte compressed; listing each would not be flat."""
MAX_LISTED = 1_000
"""Entries each of a layer's note lists holds; the rest are counted in one last entry."""


def add_note(notes: list[str], note: str) -> None:
    """Append ``note``, listing at most ``MAX_LISTED``; past that the last entry counts the rest."""
    if len(notes) < MAX_LISTED:
        notes.append(note)
    elif len(notes) == MAX_LISTED:
        notes.append("... and 1 more")
    else:
        more = int(notes[-1].split()[2]) + 1
        notes[-1] = f"... and {more} more"



@dataclass(slots=True)
class LayerResult:
    """Everything the scan keeps of one layer once its blob has been read.

    Enough to build the merged view and assess the image without the blob.
    """

    digest: str | None
    size: int
    media_type: str = ""
    diff_id: str | None = None
    """The uncompressed tar's digest, verified or computed by the walk; the
    image's chain of diff_ids is what lineage compares."""
    entries: list[Entry] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)
    """Absolute paths deleted from lower layers (from ``.wh.NAME`` markers)."""
    opaque_dirs: list[str] = field(default_factory=list)
    """Directories whose lower-layer contents are hidden (``.wh..wh..opq``)."""
    findings: list[Finding] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    stats: LayerStats = field(default_factory=LayerStats)
    cached: bool = False


class Verdict(str, enum.Enum):
    """Verdicts of DESIGN.md, declared from highest to lowest."""

    BACKDOORED_REACHABLE = "backdoored-reachable"
    BACKDOORED_DORMANT = "backdoored-dormant"
    BACKDOOR_IN_HISTORY = "backdoor-in-history"
    SOURCE_ARTIFACTS = "source-artifacts"
    AFFECTED_VERSION_NOT_INJECTED = "affected-version-not-injected"
    CLEAN = "clean"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Severity rank: higher is worse; ``error`` ranks outside the ladder."""
        order = list(Verdict)
        return -1 if self is Verdict.ERROR else len(order) - order.index(self)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an image could not be judged, kept with its structure."""

    kind: str
    """``ScanError.kind``: registry, rate-limit, manifest, source, blob, digest-mismatch, corrupt-layer, internal…"""
    message: str
    status: int | None = None
    """The HTTP status, when a registry answered."""
    retryable: bool = False
    """Whether the same request may succeed later (rate limit, 5xx, a dropped connection)."""


@dataclass(slots=True)
class ImageResult:
    """The verdict for one image (one platform of one reference)."""

    ref: str
    digest: str | None
    platform: str | None
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    layers: list[LayerResult] = field(default_factory=list)
    base: str | None = None
    """The nearest infected image this one is built on (``registry/repository:tag@digest``), from lineage."""
    error: str | None = None
    failure: Failure | None = None
    """The structured form of ``error``."""
    source: str | None = None
    """Where the image was read from (``registry``, ``oci``, ``docker-archive``, …), when known."""
    created: str | None = None
    """When it was built (the config's ``created``), or pushed when the registry says (Docker Hub)."""
