"""Registry authentication: anonymous, basic, and the bearer-token flow.

A registry that wants credentials answers ``401`` with a challenge:
``WWW-Authenticate: Basic realm=…`` or ``Bearer realm=…,service=…,scope=…``.
For Basic, the credentials go on every further request to that host. For
Bearer, a token is fetched from the realm (``GET realm?service=…&scope=…``,
with Basic credentials when there are any, or an OAuth2 refresh-token POST
for identity tokens), kept per repository scope, and reused until it expires
(``expires_in``, counted from ``issued_at``). Once a host's realm is known,
tokens for new scopes are fetched before the first request instead of after
a ``401``.

Credentials are sent only over TLS, or to a host the user declared insecure;
they are never forwarded to another host (``RegistryClient`` strips
``Authorization`` on cross-host redirects).
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from layerhound.errors import RegistryError
from layerhound.registry.credentials import Credentials
from layerhound.untrusted import JSON_ERRORS

MIN_TOKEN_LIFETIME = 60
"""Seconds; the token spec says shorter (or missing) ``expires_in`` means 60."""
MAX_TOKEN_RESPONSE = 1 << 20
CLIENT_ID = "layerhound"


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lowercase) and parameters."""

    scheme: str
    params: Mapping[str, str]


_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})")
_PARAM_RE = re.compile(rf'\s*,?\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')


def parse_challenges(header: str | None) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (several challenges may share one header)."""
    challenges: list[Challenge] = []
    if not header:
        return challenges
    pos = 0
    while pos < len(header):
        scheme = _SCHEME_RE.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM_RE.match(header, pos)
            if param is None:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
        rest = header[pos:].lstrip(" ,")
        if not rest:
            break
        pos = len(header) - len(rest)
    return challenges


def repository_scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


class Sender(Protocol):
    """How the authenticator reaches a realm (the client's retrying, unauthenticated send)."""

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], data: Mapping[str, str] | None
    ) -> httpx.Response: ...


@dataclass
class _Token:
    value: str
    expires_at: float


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Authenticator:
    """The authentication state of one registry host."""

    def __init__(
        self,
        host: str,
        credentials: Callable[[], Credentials | None],
        send: Sender,
        *,
        may_send_secrets: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self._lookup = credentials
        self._credentials: Credentials | None = None
        self._looked_up = False
        self._send = send
        self._may_send_secrets = may_send_secrets
        self._clock = clock
        self._wallclock = wallclock
        self._scheme: str | None = None
        self._realm: str | None = None
        self._service: str | None = None
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.RLock()
        self.token_fetches = 0
        """How many tokens were fetched (for tests and diagnostics)."""

    # ------------------------------------------------------------ state

    @property
    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._looked_up:
                self._credentials = self._lookup()
                self._looked_up = True
            return self._credentials

    def secrets(self) -> list[str]:
        """Everything secret this host's requests may carry, for scrubbing messages."""
        with self._lock:
            found = [t.value for t in self._tokens.values()]
            if self._credentials is not None:
                found += self._credentials.secrets()
                if self._credentials.username and self._credentials.password:
                    found.append(basic_header(self._credentials).split(" ", 1)[1])
            return found

    def authorization(self, scope: str) -> str | None:
        """The ``Authorization`` header for a request needing ``scope``, None for anonymous."""
        with self._lock:
            if self._scheme == "basic":
                creds = self.credentials
                return basic_header(creds) if creds and creds.password else None
            if self._scheme != "bearer":
                return None
            token = self._tokens.get(scope)
            if token is None or token.expires_at <= self._clock():
                token = self._fetch_token(scope, scope)
            return f"Bearer {token.value}"

    def on_unauthorized(self, header: str | None, scope: str, url: str) -> None:
        """Learn from a ``401`` so the next try carries what the registry asks for.

        Raises ``RegistryError`` when there is nothing that could satisfy it.
        """
        challenges = parse_challenges(header)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        with self._lock:
            if bearer is not None:
                self._scheme = "bearer"
                self._realm = bearer.params["realm"]
                self._service = bearer.params.get("service")
                self._tokens.pop(scope, None)
                self._fetch_token(scope, bearer.params.get("scope") or scope)
                return
            if basic is not None:
                creds = self.credentials
                if not creds or not creds.password:
                    raise RegistryError(
                        f"unauthorized: {self.host} requires credentials; give --username with "
                        "--password-stdin, LAYERHOUND_REGISTRY_USERNAME/PASSWORD, or log in with docker",
                        status=401,
                        url=url,
                    )
                self._scheme = "basic"
                return
        raise RegistryError(
            f"unauthorized: {self.host} answered 401 without a challenge layerhound understands",
            status=401,
            url=url,
        )

    def forget(self, scope: str) -> None:
        """Drop a cached token (the registry refused it)."""
        with self._lock:
            self._tokens.pop(scope, None)

    # ------------------------------------------------------------ tokens

    def _fetch_token(self, key: str, scope: str) -> _Token:
        assert self._realm is not None
        realm = self._realm
        creds = self.credentials
        if creds and not self._may_send_secrets(realm):
            raise RegistryError(
                f"{self.host}: the token service {_origin(realm)} is not HTTPS; refusing to send credentials "
                "(declare it with --insecure-registry to allow plain HTTP)",
                url=realm,
            )
        query: dict[str, str] = {}
        if self._service:
            query["service"] = self._service
        if scope:
            query["scope"] = scope
        headers = {"Accept": "application/json"}
        if creds and creds.identity_token:
            form = {**query, "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": CLIENT_ID}
            response = self._send("POST", realm, headers, form)
        else:
            if creds and creds.password:
                headers["Authorization"] = basic_header(creds)
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query) if query else realm
            response = self._send("GET", url, headers, None)
        self.token_fetches += 1
        if response.status_code in (401, 403):
            who = f"the credentials from {creds.source or 'the command line'}" if creds else "anonymous access"
            raise RegistryError(
                f"unauthorized: the token service of {self.host} refused {who}",
                status=response.status_code,
                url=realm,
            )
        if response.status_code != 200:
            raise RegistryError(
                f"the token service of {self.host} answered {response.status_code}",
                status=response.status_code,
                retryable=response.status_code >= 500 or response.status_code == 429,
                url=realm,
            )
        token = self._parse(response, realm)
        self._tokens[key] = token
        return token

    def _parse(self, response: httpx.Response, realm: str) -> _Token:
        try:
            body = json.loads(response.content[:MAX_TOKEN_RESPONSE])
        except JSON_ERRORS:
            body = None
        if not isinstance(body, dict):
            raise RegistryError(f"the token service of {self.host} gave an answer that is not JSON", url=realm)
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise RegistryError(f"the token service of {self.host} gave no token", url=realm)
        expires_in = body.get("expires_in")
        lifetime = 0.0
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            lifetime = float(expires_in)
        lifetime = max(lifetime, MIN_TOKEN_LIFETIME)
        age = _age(body.get("issued_at"), self._wallclock())
        if 0 < age < lifetime:
            lifetime -= age
        # Renew a little early, so a token never expires on its way to the registry.
        lifetime -= min(10.0, lifetime * 0.1)
        return _Token(value, self._clock() + lifetime)


def _age(issued_at: object, now: float) -> float:
    """Seconds since ``issued_at`` (RFC 3339), 0 when absent, unreadable or in the future."""
    if not isinstance(issued_at, str) or not issued_at:
        return 0.0
    text = issued_at.strip().replace("Z", "+00:00")
    # Python 3.11 reads at most 6 fractional digits; Go writes up to 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, now - when.timestamp())


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
