"""Talking to container registries (OCI distribution API).

- ``client``: ``RegistryClient`` — manifests, blobs, tags over httpx.
- ``auth``: challenges, basic and bearer tokens.
- ``credentials``: flags/environment, Docker's config.json and credential helpers.
- ``retry``: backoff and ``Retry-After``; ``ratelimit``: Docker Hub's pull budget, per-host slots.
- ``settings``: ``RegistrySettings`` (frozen, picklable); ``session``: ``RegistrySession``, the clients made with them.

``layerhound.sources.registry`` turns this into ``Image``s.
"""

from layerhound.registry.client import FetchedManifest, ManifestDescriptor, RegistryClient
from layerhound.registry.credentials import Credentials, CredentialStore
from layerhound.registry.retry import RetryPolicy
from layerhound.registry.session import RegistrySession
from layerhound.registry.settings import RegistrySettings

__all__ = [
    "CredentialStore",
    "Credentials",
    "FetchedManifest",
    "ManifestDescriptor",
    "RegistryClient",
    "RegistrySession",
    "RegistrySettings",
    "RetryPolicy",
]
