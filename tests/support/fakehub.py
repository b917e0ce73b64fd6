"""An in-process FAKE of Docker Hub's tag API (there is no Docker Hub here: no network).

A small threaded ``http.server`` on 127.0.0.1, written for these tests, that
reproduces the documented JSON of Docker Hub's tag API (``GET
/v2/namespaces/<ns>/repositories/<repo>/tags?page_size=100`` →
``count``/``next``/``previous``/``results`` with ``name``, ``tag_last_pushed``,
``last_updated``, ``digest``, ``media_type``, ``images[].digest/architecture/
os/variant``…, and ``404 {"message": "httperror 404: object not found"}`` for a
repository that does not exist) and its ``next`` paging — three tags per page,
whatever ``page_size`` asks for. It also answers the registry API's ``HEAD``
for the manifests listed in ``heads``. That the real Hub still answers like
this is not tested.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.registry import LOOPBACK, BackgroundServer, free_port

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PER_PAGE = 3


def digest_of_number(n: int) -> str:
    return f"sha256:{n:064x}"


def hub_image(arch: str, digest: str, variant: str | None = None, os: str = "linux") -> dict[str, Any]:
    """One ``images[]`` entry, with every field the Hub documents."""
    return {
        "architecture": arch, "features": "", "variant": variant, "digest": digest, "os": os,
        "os_features": "", "os_version": None, "size": 49_500_000, "status": "active",
        "last_pulled": "2024-04-01T00:00:00.000000Z", "last_pushed": "2024-03-12T01:23:45.123456Z",
    }


def hub_tag(name: str, digest: str | None, pushed: str | None, updated: str | None, images: list[dict[str, Any]],
         media_type: str | None = OCI_INDEX) -> dict[str, Any]:
    """One ``results`` entry, with every field the Hub documents."""
    entry: dict[str, Any] = {
        "creator": 7, "id": abs(hash(name)) % 100_000, "images": images, "last_updated": updated,
        "last_updater": 1156886, "last_updater_username": "doijanky", "name": name, "repository": 2,
        "full_size": 49_500_000, "v2": True, "tag_status": "active", "tag_last_pulled": "2024-04-01T00:00:00Z",
        "tag_last_pushed": pushed, "content_type": "image",
    }
    if media_type is not None:
        entry["media_type"] = media_type
    if digest is not None:
        entry["digest"] = digest
    return entry


class FakeHub(BackgroundServer):
    """A fake of Docker Hub's tag API and, for ``HEAD``s, of its registry (see the module docstring)."""

    def __init__(
        self,
        repositories: dict[tuple[str, str], list[dict[str, Any]]],
        heads: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.port = free_port()
        self.host = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.host}"
        self.repositories = repositories
        """(namespace, repository) → the tag entries, in the Hub's order (``hub_tag``)."""
        self.heads = dict(heads or {})
        """Registry-API path → (digest, media type) answered to a ``HEAD``."""
        self.seen: list[tuple[str, str]] = []
        self.throttle: dict[str, int] = {}
        """Page number → how many more times to answer 429."""
        self.next_host: str | None = None
        """Write ``next`` URLs with this host instead (a hostile or broken API)."""
        self._lock = threading.Lock()
        server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        server.daemon_threads = True
        self._serve(server)

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.throttle.clear()
            self.next_host = None

    def requests(self, method: str | None = None, prefix: str = "") -> list[str]:
        with self._lock:
            return [p for m, p in self.seen if (method is None or m == method) and p.startswith(prefix)]

    def page(self, ns: str, repo: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        tags = self.repositories.get((ns, repo))
        if tags is None:
            return 404, {"message": "httperror 404: object not found", "errinfo": {"namespace": ns,
                                                                                   "repository": repo}}, {}
        number = int(query.get("page", ["1"])[0])
        size = query.get("page_size", ["10"])[0]
        with self._lock:
            if self.throttle.get(str(number), 0) > 0:
                self.throttle[str(number)] -= 1
                return 429, {"message": "too many requests"}, {"Retry-After": "0"}
        chunk = tags[(number - 1) * PER_PAGE : number * PER_PAGE]
        base = f"http://{self.next_host or self.host}/v2/namespaces/{ns}/repositories/{repo}/tags"
        more = number * PER_PAGE < len(tags)
        return 200, {
            "count": len(tags),
            "next": f"{base}?page={number + 1}&page_size={size}" if more else None,
            "previous": f"{base}?page={number - 1}&page_size={size}" if number > 1 else None,
            "results": chunk,
        }, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self) -> None:
                with owner._lock:
                    owner.seen.append((self.command, self.path))
                parts = urllib.parse.urlsplit(self.path)
                segments = parts.path.strip("/").split("/")
                if self.command == "GET" and len(segments) == 6 and segments[:2] == ["v2", "namespaces"] \
                        and segments[3] == "repositories" and segments[5] == "tags":
                    status, body, headers = owner.page(segments[2], segments[4], urllib.parse.parse_qs(parts.query))
                    self._reply(status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
                elif parts.path == "/v2/":
                    self._reply(200, b"{}", {"Content-Type": "application/json"})
                elif parts.path in owner.heads:
                    digest, media_type = owner.heads[parts.path]
                    self._reply(200, b"{}", {"Docker-Content-Digest": digest, "Content-Type": media_type})
                else:
                    self._reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}',
                                {"Content-Type": "application/json"})

            def do_GET(self) -> None:
                self._serve()

            def do_HEAD(self) -> None:
                self._serve()

        return Handler


