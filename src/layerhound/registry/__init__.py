"""Talking to container registries (OCI distribution API).

- ``client``: ``RegistryClient`` — manifests, blobs, tags over httpx.
- ``auth``: challenges, basic and bearer tokens.
- ``credentials``: flags/environment, Docker's config.json and credential helpers.
- ``retry``: backoff and ``Retry-After``; ``ratelimit``: Docker Hub's pull budget, per-host slots.
- ``settings``: ``RegistrySettings`` (frozen, picklable); ``session``: ``RegistrySession``, the clients made with them.

``layerhound.sources.registry`` turns this into ``Image``s. The package itself
imports nothing, so the command line reads ``settings`` without loading httpx,
which only ``client`` (and what uses it) needs. The names below are here, not in
``settings``, so that ``layerhound --help`` can print them without loading even
``dataclasses``.
"""

ENV_HUB_API = "LAYERHOUND_HUB_API"
"""The environment variable naming another Docker Hub API (the tests' stand-in)."""
ENV_USERNAME = "LAYERHOUND_REGISTRY_USERNAME"
ENV_PASSWORD = "LAYERHOUND_REGISTRY_PASSWORD"
DEFAULT_CONCURRENCY = 4
"""Requests in flight at once per registry host, unless ``--max-concurrency`` says otherwise."""
