"""``RegistrySettings``: how to talk to registries, as a plain value.

Settings are frozen and picklable, so a crawl hands the same value to every
worker process (or Dask worker), and each builds its own ``RegistrySession``
from it (``layerhound.registry.session``): connections, tokens, pull budgets
and per-host semaphores live there, never in a global.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from layerhound.registry import DEFAULT_CONCURRENCY, ENV_PASSWORD, ENV_USERNAME
from layerhound.registry.retry import RetryPolicy

if TYPE_CHECKING:
    from layerhound.registry.credentials import CredentialStore

DEFAULT_PULL_RESERVE = 5


def split_port(host: str) -> tuple[str, int | None]:
    """``name:5000`` → (``name``, 5000); ``[::1]:5000`` → (``[::1]``, 5000); no port → None."""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end != -1 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            return host[: end + 1], int(rest[1:])
        return host, None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


@dataclass(frozen=True, eq=False)
class RegistrySettings:
    """Settings for every registry a command talks to (frozen, picklable)."""

    insecure_registries: frozenset[str] = frozenset()
    """Hosts (``host`` or ``host:port``) reached over plain HTTP; all others need verified TLS."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """Explicit credentials (flags/environment); they win over Docker's config."""
    config_path: Path | None = None
    """Docker ``config.json``; None: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    max_concurrency: int = DEFAULT_CONCURRENCY
    """Requests (blob downloads included) in flight at once per registry host."""
    ca_file: Path | None = None
    """Extra trust for TLS (PEM); None: the system store (honours ``SSL_CERT_FILE``/``SSL_CERT_DIR``)."""
    timeout: float = 60.0
    """Seconds to wait for a connection or for the next bytes of an answer."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    pull_reserve: int = DEFAULT_PULL_RESERVE
    """Stop pulling from a host whose ``ratelimit-remaining`` is down to this many pulls."""
    environ: Mapping[str, str] | None = field(default=None, repr=False)
    """Environment for ``DOCKER_CONFIG`` lookups; None: ``os.environ``."""
    mirrors: Mapping[str, str] = field(default_factory=dict)
    """Registry → ``host[:port]`` that serves its content instead (``docker.io`` → a pull-through
    mirror). Names, tags and dates still come from the registry's own API (Docker Hub's tag API);
    manifests and blobs, verified by digest as always, from the mirror."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if (self.username is None) != (self.password is None):
            raise ValueError("a username needs a password and a password needs a username")
        hosts = frozenset(h.strip().lower() for h in self.insecure_registries if h.strip())
        object.__setattr__(self, "insecure_registries", hosts)
        if self.environ is not None and not isinstance(self.environ, dict):
            object.__setattr__(self, "environ", dict(self.environ))  # os.environ does not pickle
        object.__setattr__(self, "mirrors", {k.strip().lower(): v.strip() for k, v in dict(self.mirrors).items()})

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> RegistrySettings:
        """Options with credentials from ``LAYERHOUND_REGISTRY_USERNAME``/``_PASSWORD`` when both are set."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {} if environ is None else {"environ": environ}
        user, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
        if user and password:
            values.update(username=user, password=password)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def mirror_of(self, registry: str) -> str | None:
        """The host that serves ``registry``'s manifests and blobs, if a mirror was given."""
        return self.mirrors.get(registry.lower())

    def is_insecure(self, host: str) -> bool:
        """Whether ``host`` (``name[:port]``) may be reached over plain HTTP."""
        host = host.lower()
        name = split_port(host)[0]
        return host in self.insecure_registries or name in self.insecure_registries

    def credential_store(self, explicit: bool = True) -> CredentialStore:
        """Where credentials come from; ``explicit`` False leaves out the command line's."""
        # Here, not at the top: config.json, helpers and logging are for commands that log in.
        from layerhound.registry.credentials import Credentials, CredentialStore

        given = None
        if explicit and self.username is not None and self.password is not None:
            given = Credentials(self.username, self.password, source="the command line or environment")
        return CredentialStore(given, self.config_path, self.environ)

    def replace(self, **changes: object) -> RegistrySettings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
