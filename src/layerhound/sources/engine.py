"""Local container engines: where their API answers, and the two calls a scan needs.

Docker and Podman both serve the Docker Engine API over a unix socket (Podman's
``system service``). A scan asks two things of it: ``GET /images/{name}/json``
(the image's identity: ID, tags, diff_ids, platform) and ``GET
/images/{name}/get`` (the image as a ``docker save`` tar, streamed; see
``engine_image``). The client is the standard library's ``http.client`` over a
unix or TCP socket: nothing else is needed, and nothing heavier is imported for
a scan that never touches an engine.

Where the API is looked for follows the engines' own clients:

* Docker: ``DOCKER_HOST``, else the current Docker context (``DOCKER_CONTEXT``
  or ``currentContext`` of ``$DOCKER_CONFIG/config.json``), else
  ``/var/run/docker.sock``;
* Podman: ``CONTAINER_HOST``, else ``$XDG_RUNTIME_DIR/podman/podman.sock``
  (rootless), else ``/run/podman/podman.sock``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerhound.errors import SourceError
from layerhound.sources.base import load_json

DOCKER_DAEMON = "docker-daemon"
PODMAN = "podman"
ENGINE_NAMES = {DOCKER_DAEMON: "Docker engine", PODMAN: "Podman service"}

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
ROOTFUL_PODMAN_SOCKET = "/run/podman/podman.sock"
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the engine to accept a connection."""
READ_TIMEOUT = 600.0
"""Seconds the engine may stay silent mid-response (an export of a big image starts slowly)."""
MAX_INSPECT = 16 * 1024 * 1024
"""Largest ``/images/{name}/json`` answer read (real ones: a few KiB)."""


class EngineUnavailable(SourceError):
    """No engine answers at the endpoint: no socket, nothing listening, no permission."""

    def __init__(self, message: str, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent
        """True when no engine runs there at all (no socket, nothing listening), not a refusal."""


class NoSuchImage(SourceError):
    """The engine answers but holds no image by that name."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place an engine's API may answer."""

    engine: str
    """``docker-daemon`` or ``podman``."""
    url: str
    """``unix:///path`` or ``tcp://host:port``."""
    origin: str
    """Why this endpoint: ``DOCKER_HOST``, ``the Docker context 'x'``, ``the default socket``…"""

    def __str__(self) -> str:
        return f"the {ENGINE_NAMES[self.engine]} at {self.url}"


def docker_endpoint(env: Mapping[str, str]) -> Endpoint:
    """Where the Docker CLI would connect, given ``env`` (``os.environ``)."""
    if env.get("DOCKER_HOST"):
        return Endpoint(DOCKER_DAEMON, env["DOCKER_HOST"], "DOCKER_HOST")
    context = _docker_context(env)
    if context is not None:
        return context
    return Endpoint(DOCKER_DAEMON, f"unix://{DEFAULT_DOCKER_SOCKET}", "the default socket")


def _docker_context(env: Mapping[str, str]) -> Endpoint | None:
    config_dir = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME", "~")).expanduser() / ".docker")
    name = env.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir / "config.json").read_text(encoding="utf-8")).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None
    if not isinstance(name, str) or not name or name == "default":
        return None
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    try:
        host = json.loads(meta.read_text(encoding="utf-8"))["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineUnavailable(f"the Docker context {name!r} has no readable endpoint in {meta}") from exc
    if not isinstance(host, str) or not host:
        raise EngineUnavailable(f"the Docker context {name!r} names no host in {meta}")
    return Endpoint(DOCKER_DAEMON, host, f"the Docker context {name!r}")


def podman_endpoint(env: Mapping[str, str]) -> Endpoint:
    """Where ``podman --remote`` would connect: the first of its sockets that exists."""
    if env.get("CONTAINER_HOST"):
        return Endpoint(PODMAN, env["CONTAINER_HOST"], "CONTAINER_HOST")
    candidates = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append((os.path.join(env["XDG_RUNTIME_DIR"], "podman", "podman.sock"), "the rootless socket"))
    candidates.append((ROOTFUL_PODMAN_SOCKET, "the rootful socket"))
    for path, origin in candidates:
        if os.path.exists(path):
            return Endpoint(PODMAN, f"unix://{path}", origin)
    path, origin = candidates[0]
    return Endpoint(PODMAN, f"unix://{path}", origin)


def endpoint_for(engine: str, env: Mapping[str, str] | None = None) -> Endpoint:
    """The endpoint of ``docker-daemon`` or ``podman``."""
    env = os.environ if env is None else env
    return docker_endpoint(env) if engine == DOCKER_DAEMON else podman_endpoint(env)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=CONNECT_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class EngineClient:
    """The Docker Engine API calls a scan makes, against one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        parsed = urllib.parse.urlsplit(endpoint.url)
        self._scheme = parsed.scheme
        if parsed.scheme == "unix":
            self._target = parsed.path
        elif parsed.scheme in ("tcp", "http"):
            if not parsed.hostname:
                raise EngineUnavailable(f"{endpoint}: no host in {endpoint.url!r} ({endpoint.origin})")
            self._target = parsed.netloc
        else:
            raise EngineUnavailable(
                f"{endpoint}: {parsed.scheme or 'this'}:// endpoints are not supported ({endpoint.origin}); "
                "use a unix:// socket or tcp://HOST:PORT without TLS"
            )

    def _connect(self) -> http.client.HTTPConnection:
        if self._scheme == "unix":
            return _UnixConnection(self._target)
        return http.client.HTTPConnection(self._target, timeout=CONNECT_TIMEOUT)

    @contextmanager
    def get(self, path: str) -> Iterator[http.client.HTTPResponse]:
        """A GET whose response is streamed; raises ``EngineUnavailable``, ``NoSuchImage`` or ``SourceError``."""
        connection = self._connect()
        try:
            try:
                connection.connect()
                assert connection.sock is not None
                connection.sock.settimeout(READ_TIMEOUT)
                connection.request("GET", path, headers={"Host": "localhost", "Accept": "*/*"})
                response = connection.getresponse()
            except OSError as exc:
                raise self._unavailable(exc) from None
            except http.client.HTTPException as exc:
                raise SourceError(f"{self.endpoint} does not speak HTTP: {type(exc).__name__}: {exc}") from None
            if response.status == 404:
                raise NoSuchImage(f"{self.endpoint} holds no such image ({_message(response)})")
            if response.status != 200:
                raise SourceError(f"{self.endpoint} answered {response.status} to GET {path}: {_message(response)}")
            yield response
        finally:
            connection.close()

    def _unavailable(self, exc: OSError) -> EngineUnavailable:
        where = f"{self.endpoint} ({self.endpoint.origin})"
        if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
            return EngineUnavailable(f"no engine socket: {where} does not exist", absent=True)
        if isinstance(exc, PermissionError) or exc.errno == errno.EACCES:
            return EngineUnavailable(
                f"permission denied on {where}: run as a user who may use the engine (the docker group, or root)"
            )
        if isinstance(exc, ConnectionRefusedError):
            return EngineUnavailable(f"nothing listens on {where}: is the engine running?", absent=True)
        if isinstance(exc, TimeoutError | socket.timeout):
            return EngineUnavailable(f"{where} did not answer within {CONNECT_TIMEOUT:.0f} s")
        return EngineUnavailable(f"cannot reach {where}: {exc.strerror or exc}")

    def inspect(self, name: str) -> dict[str, Any]:
        """``GET /images/{name}/json``: the engine's record of the image."""
        with self.get(f"/images/{_quote(name)}/json") as response:
            data = response.read(MAX_INSPECT + 1)
        if len(data) > MAX_INSPECT:
            raise SourceError(f"{self.endpoint}: the inspect answer for {name!r} is larger than {MAX_INSPECT} bytes")
        return load_json(data, f"{self.endpoint}: the inspect answer for {name!r}")

    def export(self, image_id: str) -> AbstractContextManager[http.client.HTTPResponse]:
        """``GET /images/{id}/get``: the image as a ``docker save`` tar, as a streamed response."""
        return self.get(f"/images/{_quote(image_id)}/get")


def _quote(name: str) -> str:
    # Names keep their slashes, colons and @ (the engines route /images/{name:.*}/json).
    return urllib.parse.quote(name, safe="/:@")


def _message(response: http.client.HTTPResponse) -> str:
    """The engine's error message (``{"message": …}``), bounded and on one line."""
    body = response.read(64 * 1024)
    try:
        message = json.loads(body).get("message")
    except (ValueError, RecursionError, AttributeError):  # JSON_ERRORS, and a body that is no object
        message = None
    text = message if isinstance(message, str) else body.decode("utf-8", "replace")
    return " ".join(text.split())[:500] or response.reason
