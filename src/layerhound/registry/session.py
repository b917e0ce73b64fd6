"""``RegistrySession``: the live side of ``RegistrySettings``.

A session owns one ``RegistryClient`` per registry host, so tokens,
connections, the Docker Hub pull budget and the per-host concurrency limit are
shared by every reference scanned with it. It is built from settings, never
found in a global: a command makes one, a crawl's worker process makes its
own from the settings it was handed. Close it (or use it as a context
manager) when done.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from layerhound.registry.settings import RegistrySettings

if TYPE_CHECKING:
    from layerhound.registry.client import RegistryClient


class RegistrySession:
    """Clients (one per host) made with one ``RegistrySettings``."""

    def __init__(self, settings: RegistrySettings | None = None) -> None:
        self.settings = settings if settings is not None else RegistrySettings.from_environment()
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, registry: str) -> RegistryClient:
        """The shared client of one registry (``docker.io`` or ``host[:port]``)."""
        from layerhound.registry.credentials import normalize_host  # a scan of local images never needs it

        key = normalize_host(registry)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # httpx is loaded by the first registry a command reaches: a scan of local images never pays for it.
                from layerhound.registry.client import RegistryClient

                client = self._clients[key] = RegistryClient(key, self.settings)
            return client

    def clients(self) -> list[RegistryClient]:
        with self._lock:
            return list(self._clients.values())

    def close(self) -> None:
        """Close every client (connections); the session can still make new ones."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> RegistrySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
