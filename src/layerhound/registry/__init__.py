"""Talking to container registries (OCI distribution API).

- ``client``: ``RegistryClient`` — manifests, blobs, tags over httpx.
- ``auth``: challenges, basic and bearer tokens.
- ``credentials``: flags/environment, Docker's config.json and credential helpers.
- ``retry``: backoff and ``Retry-After``; ``ratelimit``: Docker Hub's pull budget, per-host slots.
- ``options``: ``RegistryOptions``, the settings and the clients made with them.

``layerhound.sources.registry`` turns this into ``Image``s.
"""

from layerhound.registry.client import FetchedManifest, ManifestDescriptor, RegistryClient
from layerhound.registry.credentials import Credentials, CredentialStore
from layerhound.registry.options import RegistryOptions
from layerhound.registry.retry import RetryPolicy

__all__ = [
    "CredentialStore",
    "Credentials",
    "FetchedManifest",
    "ManifestDescriptor",
    "RegistryClient",
    "RegistryOptions",
    "RetryPolicy",
]
