"""How references are opened: where a bare name is looked for, how host roots are walked.

Passed explicitly from the command line down to the openers; the defaults are
the library's (the registry only), the command line's are ``scan``'s options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from layerhound.errors import UsageError
from layerhound.sources.refs import DOCKER_DAEMON, PODMAN

REMOTE = "remote"
IMAGE_SOURCES = {"docker": DOCKER_DAEMON, "podman": PODMAN}
"""``--image-src`` names of the local engines → their transports."""
DEFAULT_IMAGE_SRC = ("docker", "podman", REMOTE)
"""Where ``layerhound scan NAME`` looks, in order: what Trivy and Grype do."""


@dataclass(frozen=True, slots=True)
class SourceOptions:
    image_src: tuple[str, ...] = (REMOTE,)
    """Where a bare ``NAME[:TAG]`` is looked for, in order; the first that holds it is used."""
    cross_mounts: bool = False
    """Whether a walk of a host root (``rootfs:``, ``host:``) enters other filesystems."""
    exclude: tuple[str, ...] = ()
    """Host directories a walk of a host root does not enter (listed as skipped)."""
    env: Mapping[str, str] | None = None
    """The environment engine sockets are found from (``DOCKER_HOST``…); None: this process's."""


def parse_image_src(text: str) -> tuple[str, ...]:
    """``docker,podman,remote`` → its names, checked; ``UsageError`` otherwise."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    known = (*IMAGE_SOURCES, REMOTE)
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise UsageError(
            f"--image-src takes a comma-separated list of {', '.join(known)}, not {text!r}"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"--image-src names a place twice: {text!r}")
    return names
