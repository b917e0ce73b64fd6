"""An OCI distribution client on httpx: manifests, blobs, tags.

One ``RegistryClient`` talks to one registry host. Every request goes through
``_exchange``, which owns the rules of being a good citizen: bounded retries
with jittered backoff on 5xx and dropped connections, ``429`` honoured with
``Retry-After``, authentication on ``401`` (``auth.Authenticator``), and
redirects followed by hand — ``Authorization`` is sent to the registry's own
origin only, never to the blob storage it redirects to, and HTTPS is never
downgraded to plain HTTP unless the target host is declared insecure.

Blobs are streamed (``open_blob``): nothing is buffered beyond one chunk, the
caller verifies the digest while reading (``VerifyingReader``), and a
connection that breaks mid-blob is resumed with a ``Range`` request from the
byte where it broke (or restarted, skipping what was read, when the registry
ignores ``Range``), a bounded number of times. Manifests are checked against
their digest here: against the requested digest when fetched by digest, and
against ``Docker-Content-Digest`` (when the registry sends it) when fetched by
tag; the image digest is the sha256 of the bytes received.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import httpx

from layerhound import __version__
from layerhound.errors import DigestMismatch, RegistryError, redact_url
from layerhound.registry.auth import Authenticator, repository_scope
from layerhound.registry.credentials import DOCKER_HUB, Credentials
from layerhound.registry.ratelimit import HostSlots, PullBudget
from layerhound.registry.retry import RETRY_STATUSES, parse_retry_after
from layerhound.registry.settings import RegistrySettings
from layerhound.untrusted import JSON_ERRORS

log = logging.getLogger(__name__)
_E = TypeVar("_E", bound=BaseException)

# The same strings as layerhound.sources.manifest (not imported: sources imports this package).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
"""What we ask for; schema 1 is left out on purpose (registries convert or refuse)."""

MAX_MANIFEST_SIZE = 16 * 1024 * 1024
MANIFESTS_KEPT = 2048
"""Manifests fetched by digest that a client keeps (a few KB each)."""
MAX_ERROR_BODY = 64 * 1024
MAX_TAG_PAGES = 10_000
CHUNK = 1 << 20
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DOCKER_HUB_API = "registry-1.docker.io"
USER_AGENT = f"layerhound/{__version__}"

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
REPOSITORY_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index as received, already checked against its digest."""

    data: bytes
    digest: str
    """The requested digest, or the sha256 of ``data`` when fetched by tag."""
    media_type: str
    """``Content-Type`` without parameters ("" when the registry sent none)."""


@dataclass(frozen=True)
class ManifestDescriptor:
    """What a ``HEAD`` says about a manifest (no pull counted on Docker Hub)."""

    digest: str
    media_type: str
    size: int | None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    default = 443 if url.scheme == "https" else 80
    return url.scheme, url.host, url.port or default


def _netloc(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port else host


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in ``exc``'s chain (httpx wraps httpcore wraps ssl/socket)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def ssl_context(ca_file: object | None = None) -> ssl.SSLContext:
    """Verified TLS: the system store (and ``SSL_CERT_FILE``/``SSL_CERT_DIR``), plus ``ca_file``."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    elif context.cert_store_stats().get("x509_ca", 0) == 0 and not context.get_ca_certs():
        try:
            import certifi

            context.load_verify_locations(cafile=certifi.where())
        except (ImportError, OSError):
            pass
    return context


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class RegistryClient:
    """The OCI distribution API of one registry host."""

    def __init__(
        self,
        registry: str,
        options: RegistrySettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.options = options
        mirror = options.mirror_of(registry)
        api_host = mirror or (DOCKER_HUB_API if registry == DOCKER_HUB else registry)
        scheme = "http" if options.is_insecure(api_host) or (not mirror and options.is_insecure(registry)) else "https"
        self.base = httpx.URL(f"{scheme}://{api_host}")
        self.retry = options.retry
        self.slots = HostSlots(options.max_concurrency)
        self.budget = PullBudget(registry, options.pull_reserve)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._manifests: OrderedDict[tuple[str, str], FetchedManifest] = OrderedDict()
        self._manifest_lock = threading.Lock()
        # A mirror never receives the mirrored registry's credentials, nor those given on the command
        # line: only what Docker's config holds for the mirror's own host.
        self._store = options.credential_store(explicit=mirror is None)
        credentials_for = mirror or registry
        self.auth = Authenticator(
            registry,
            lambda: self._store.lookup(credentials_for),
            self._send_unauthenticated,
            may_send_secrets=self._may_send_secrets,
            clock=clock,
        )
        self._http = httpx.Client(
            verify=ssl_context(options.ca_file),
            timeout=httpx.Timeout(options.timeout, connect=min(options.timeout, 15.0)),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(
                max_connections=options.max_concurrency * 2 + 2,
                max_keepalive_connections=options.max_concurrency,
            ),
            transport=transport,
        )

    # ------------------------------------------------------------ public API

    def ping(self) -> None:
        """``GET /v2/``: the registry is there, speaks the API and accepts us."""
        url = self._url("/v2/")
        with self.slots:
            response = self._exchange("GET", url, scope="", headers={}, what="the API root")
            try:
                if response.status_code != 200:
                    raise self._error(response, "the API root", url)
            finally:
                response.close()

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """A manifest or index by tag or digest, verified (see the module docstring).

        Fetched by digest, a manifest is content: it is kept for the life of the
        client (bounded), so a crawl that lists a tag's manifest for its date
        and then opens it fetches it once (on Docker Hub, one pull, not two).
        """
        by_digest = self._check_reference(repository, reference)
        if by_digest:
            with self._manifest_lock:
                kept = self._manifests.get((repository, reference))
            if kept is not None:
                return kept
        fetched = self._fetch_manifest(repository, reference, by_digest)
        if by_digest:
            with self._manifest_lock:
                self._manifests[(repository, reference)] = fetched
                while len(self._manifests) > MANIFESTS_KEPT:
                    self._manifests.popitem(last=False)
        return fetched

    def _fetch_manifest(self, repository: str, reference: str, by_digest: bool) -> FetchedManifest:
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        what = self._manifest_label(repository, reference)
        with self.slots:
            self.budget.check(str(url))
            response, data = self._get_document(
                url, repository_scope(repository), {"Accept": ", ".join(MANIFEST_ACCEPT)}, what
            )
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        header = response.headers.get("docker-content-digest", "").strip()
        if by_digest:
            actual = digest_of(data, reference.split(":", 1)[0])
            if actual != reference:
                raise DigestMismatch(reference, actual, what)
            return FetchedManifest(data, reference, media_type)
        if header:
            if not DIGEST_RE.fullmatch(header):
                raise RegistryError(f"{what}: the registry sent a malformed Docker-Content-Digest", url=str(url))
            actual = digest_of(data, header.split(":", 1)[0])
            if actual != header:
                raise DigestMismatch(header, actual, f"{what} (Docker-Content-Digest)")
        return FetchedManifest(data, digest_of(data), media_type)

    def resolve(self, repository: str, reference: str) -> ManifestDescriptor:
        """The digest of a tag by ``HEAD`` (``Docker-Content-Digest``; not a pull on Docker Hub).

        Falls back to a GET (and hashing the bytes) when the registry does not
        send the header.
        """
        by_digest = self._check_reference(repository, reference)
        url = self._url(f"/v2/{repository}/manifests/{reference}")
        what = self._manifest_label(repository, reference)
        with self.slots:
            response = self._exchange(
                "HEAD", url, scope=repository_scope(repository), headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
                what=what,
            )
            response.close()
        if response.status_code != 200:
            raise self._error(response, what, url)
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        length = response.headers.get("content-length", "")
        size = int(length) if length.isdigit() else None
        header = response.headers.get("docker-content-digest", "").strip()
        if DIGEST_RE.fullmatch(header):
            if by_digest and header != reference:
                raise DigestMismatch(reference, header, f"{what} (Docker-Content-Digest)")
            return ManifestDescriptor(header, media_type, size)
        fetched = self.get_manifest(repository, reference)
        return ManifestDescriptor(fetched.digest, fetched.media_type or media_type, len(fetched.data))

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[BinaryIO]:
        """Stream a blob (raw bytes, unverified: the caller verifies while reading).

        Holds one of the host's concurrency slots until the stream is closed.
        """
        if not DIGEST_RE.fullmatch(digest):
            raise RegistryError(f"refusing blob digest {digest!r}: not sha256/sha512 with lowercase hex")
        self._check_repository(repository)
        with self.slots:
            stream = BlobStream(self, repository, digest)
            try:
                yield io.BufferedReader(stream, CHUNK)
            finally:
                stream.close()

    def list_tags(self, repository: str, page_size: int | None = None, last: str | None = None) -> list[str]:
        """Every tag of a repository, following ``Link: <…>; rel="next"`` pages (``n``/``last``)."""
        self._check_repository(repository)
        query = {k: v for k, v in (("n", str(page_size) if page_size else None), ("last", last)) if v}
        url: httpx.URL | None = self._url(f"/v2/{repository}/tags/list").copy_merge_params(query)
        what = f"the tags of {self.registry}/{repository}"
        tags: list[str] = []
        seen: set[str] = set()
        while url is not None and len(seen) < MAX_TAG_PAGES:
            seen.add(str(url))
            with self.slots:
                response, data = self._get_document(url, repository_scope(repository), {}, what)
            try:
                body = json.loads(data)
            except JSON_ERRORS:
                raise RegistryError(f"{what}: the answer is not JSON", url=str(url)) from None
            page = body.get("tags") if isinstance(body, dict) else None
            if page is not None and not isinstance(page, list):
                raise RegistryError(f"{what}: the answer has no list of tags", url=str(url))
            tags.extend(t for t in page or [] if isinstance(t, str))
            link = response.links.get("next", {}).get("url")
            url = None
            if link:
                following = url_join(response.url, link)
                if _origin(following) != _origin(self.base):
                    raise RegistryError(f"{what}: the next page is on another host", url=str(following))
                if str(following) not in seen:
                    url = following
        return tags

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ requests

    def _url(self, path: str) -> httpx.URL:
        return self.base.copy_with(raw_path=path.encode("ascii"))

    def _check_repository(self, repository: str) -> None:
        if not REPOSITORY_RE.fullmatch(repository):
            raise RegistryError(f"invalid repository name {repository!r}")

    def _check_reference(self, repository: str, reference: str) -> bool:
        """Validate before building a URL; True for a digest, False for a tag."""
        self._check_repository(repository)
        if DIGEST_RE.fullmatch(reference):
            return True
        if ":" in reference:
            raise RegistryError(f"unsupported or malformed digest {reference!r}")
        if not TAG_RE.fullmatch(reference):
            raise RegistryError(f"invalid tag {reference!r}")
        return False

    def _manifest_label(self, repository: str, reference: str) -> str:
        separator = "@" if ":" in reference else ":"
        return f"{self.registry}/{repository}{separator}{reference}"

    def _may_send_secrets(self, url: str) -> bool:
        parsed = httpx.URL(url)
        return parsed.scheme == "https" or self.options.is_insecure(_netloc(parsed))

    def _send_unauthenticated(
        self, method: str, url: str, headers: Mapping[str, str], data: Mapping[str, str] | None
    ) -> httpx.Response:
        """For the token realm: retries and redirects, no registry auth; the body is read."""
        response = self._exchange(method, httpx.URL(url), scope=None, headers=headers, what="a token", data=data)
        try:
            response.read()
        finally:
            response.close()
        return response

    def _exchange(
        self,
        method: str,
        url: httpx.URL,
        *,
        scope: str | None,
        headers: Mapping[str, str],
        what: str,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One logical request; returns an open, streamed response with a final status.

        ``scope`` None means no registry authentication at all (token realm).
        Redirects, ``401``s answered by authenticating, ``429`` and retryable
        failures are handled here; any other status is for the caller.
        """
        authorized = scope is not None
        retries = 0
        auth_rounds = 0
        redirects = 0
        current = url
        while True:
            request_headers = dict(headers)
            if authorized and scope is not None:
                authorization = self.auth.authorization(scope)
                if authorization:
                    request_headers["Authorization"] = authorization
            try:
                request = self._http.build_request(method, current, headers=request_headers, data=data)
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                self._raise_if_fatal(exc, current)
                if retries + 1 >= self.retry.attempts:
                    raise RegistryError(
                        f"cannot reach {_netloc(current)} for {what}: {self._scrub(_describe(exc))} "
                        f"(gave up after {self.retry.attempts} attempts)",
                        retryable=True,
                        url=str(current),
                    ) from None
                log.info("%s %s failed (%s); retrying", method, redact_url(str(current)), type(exc).__name__)
                self._sleep(self.retry.backoff(retries, self._rng))
                retries += 1
                continue
            status = response.status_code
            log.debug("%s %s -> %d", method, redact_url(str(current)), status)
            self.budget.observe(response.headers)
            if status in REDIRECT_STATUSES and response.headers.get("location") and method in ("GET", "HEAD"):
                target = url_join(current, response.headers["location"])
                response.close()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RegistryError(f"{what}: more than {MAX_REDIRECTS} redirects", url=str(current))
                if current.scheme == "https" and target.scheme != "https" and not self.options.is_insecure(
                    _netloc(target)
                ):
                    raise RegistryError(
                        f"{what}: refusing a redirect from HTTPS to plain HTTP ({_netloc(target)})",
                        url=str(target),
                    )
                if _origin(target) != _origin(self.base):
                    authorized = False  # credentials stay with the registry
                current = target
                continue
            if status == 401 and authorized and scope is not None:
                challenge = ", ".join(response.headers.get_list("www-authenticate"))
                response.close()
                if auth_rounds >= 1:
                    self.auth.forget(scope)
                    raise self._unauthorized(what, current)
                auth_rounds += 1
                self.auth.on_unauthorized(challenge, scope, str(current))
                continue
            if status == 429 or status in RETRY_STATUSES:
                wait = parse_retry_after(response.headers.get("retry-after")) if status == 429 else None
                reason = response.reason_phrase
                response.close()
                too_long = wait is not None and wait > self.retry.max_retry_after
                if retries + 1 >= self.retry.attempts or too_long:
                    after = f"; it asks to retry after {wait:.0f} s" if wait is not None else ""
                    label = "too many requests (rate limited)" if status == 429 else f"{status} {reason}"
                    raise RegistryError(
                        f"{self.registry} answered {label} for {what}{after} "
                        f"(gave up after {retries + 1} attempts)",
                        status=status,
                        retryable=True,
                        url=str(current),
                    )
                delay = wait if wait is not None else self.retry.backoff(retries, self._rng)
                log.info("%s %s -> %d; retrying in %.1f s", method, redact_url(str(current)), status, delay)
                self._sleep(delay)
                retries += 1
                continue
            return response

    def _raise_if_fatal(self, exc: httpx.TransportError, url: httpx.URL) -> None:
        """TLS failures and unknown host names are not transient: say so instead of retrying."""
        host = _netloc(url)
        unresolved = _cause(exc, socket.gaierror)
        if unresolved is not None and unresolved.errno != socket.EAI_AGAIN:  # EAI_AGAIN may pass
            raise RegistryError(f"cannot resolve the host name of {host}", url=str(url)) from None
        problem = _cause(exc, ssl.SSLError)
        if problem is None:
            return
        if isinstance(problem, ssl.SSLCertVerificationError):
            reason = problem.verify_message or problem.reason or "verification failed"
            raise RegistryError(
                f"the TLS certificate of {host} could not be verified ({reason}); trust its CA "
                f"(SSL_CERT_FILE), or use --insecure-registry {host} for a plain-HTTP registry",
                url=str(url),
            ) from None
        raise RegistryError(
            f"TLS with {host} failed ({problem.reason or _describe(problem)}); "
            f"if it is a plain-HTTP registry, use --insecure-registry {host}",
            url=str(url),
        ) from None

    def _get_document(
        self, url: httpx.URL, scope: str, headers: dict[str, str], what: str
    ) -> tuple[httpx.Response, bytes]:
        """GET a small JSON document (manifest, tag page): 200 or a RegistryError.

        The body is read within ``MAX_MANIFEST_SIZE`` and the response closed;
        its headers stay readable for the caller (digest, Content-Type, Link).
        """
        response = self._exchange("GET", url, scope=scope, headers=headers, what=what)
        try:
            if response.status_code != 200:
                raise self._error(response, what, url)
            return response, self._read_limited(response, MAX_MANIFEST_SIZE, what, url)
        finally:
            response.close()

    def _read_limited(self, response: httpx.Response, limit: int, what: str, url: httpx.URL) -> bytes:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise RegistryError(f"{what} is larger than {limit} bytes", url=str(url))
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_bytes(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise RegistryError(f"{what} is larger than {limit} bytes", url=str(url))
                chunks.append(chunk)
        except httpx.TransportError as exc:
            raise RegistryError(
                f"the connection to {_netloc(url)} broke while reading {what}: {_describe(exc)}",
                retryable=True,
                url=str(url),
            ) from None
        return b"".join(chunks)

    # ------------------------------------------------------------ errors

    def _scrub(self, text: str) -> str:
        for secret in self.auth.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text

    def _credentials(self) -> Credentials | None:
        try:
            return self.auth.credentials
        except RegistryError:
            return None

    def _unauthorized(self, what: str, url: httpx.URL) -> RegistryError:
        creds = self._credentials()
        if creds:
            message = (
                f"unauthorized: {self.registry} refused access to {what} with the credentials from "
                f"{creds.source or 'the configuration'} (wrong credentials, no access, or it does not exist)"
            )
        else:
            message = (
                f"unauthorized: {what} needs credentials (or does not exist); give --username with "
                "--password-stdin, LAYERHOUND_REGISTRY_USERNAME/PASSWORD, or log in with docker"
            )
        return RegistryError(message, status=401, url=str(url))

    def _error(self, response: httpx.Response, what: str, url: httpx.URL) -> RegistryError:
        """A ``RegistryError`` for an unexpected status, with the registry's own error code."""
        status = response.status_code
        codes: list[str] = []
        messages: list[str] = []
        text = ""
        if not response.is_closed:
            try:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ERROR_BODY:
                        break
                text = body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
                parsed: Any = json.loads(text) if text.startswith("{") else None
            except (httpx.HTTPError, ValueError, RecursionError):  # the transport, or JSON_ERRORS
                parsed = None
            finally:
                response.close()
            errors = parsed.get("errors") if isinstance(parsed, dict) else None
            for item in errors if isinstance(errors, list) else []:
                if isinstance(item, dict):
                    codes.append(str(item.get("code") or ""))
                    if item.get("message"):
                        messages.append(str(item["message"])[:200])
        retryable = status >= 500 or status == 429
        if "NAME_UNKNOWN" in codes or (status == 404 and "/manifests/" not in url.path and "/blobs/" not in url.path):
            message = f"repository not found: {what}"
        elif status == 404 and "/manifests/" in url.path:
            message = f"manifest unknown: {what} does not exist"
        elif status == 404 and "/blobs/" in url.path:
            message = f"blob unknown: {what} is not in the registry"
        elif status == 401:
            return self._unauthorized(what, url)
        elif status == 403 or "DENIED" in codes:
            message = f"access denied: {self.registry} does not allow reading {what}"
        else:
            plain = text.splitlines()[0][:200] if text and parsed is None and "<" not in text else ""
            detail = "; ".join(messages) or plain or response.reason_phrase or "unexpected answer"
            message = f"{self.registry} answered {status} for {what}: {detail}"
        if codes and codes[0] and codes[0] not in message:
            message += f" ({codes[0]})"
        return RegistryError(self._scrub(message), status=status, retryable=retryable, url=str(url))


def url_join(base: httpx.URL, location: str) -> httpx.URL:
    return httpx.URL(urllib.parse.urljoin(str(base), location))


class BlobStream(io.RawIOBase):
    """The bytes of one blob, resumed where they broke off when a connection drops."""

    def __init__(self, client: RegistryClient, repository: str, digest: str) -> None:
        super().__init__()
        self._client = client
        self._repository = repository
        self._digest = digest
        self._what = f"blob {digest} of {client.registry}/{repository}"
        self.offset = 0
        self.resumes = 0
        self._skip = 0
        self._pending = memoryview(b"")
        self._done = False
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._open(0)

    def readable(self) -> bool:
        return True

    def _open(self, start: int) -> None:
        headers = {"Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        url = self._client._url(f"/v2/{self._repository}/blobs/{self._digest}")
        response = self._client._exchange(
            "GET", url, scope=repository_scope(self._repository), headers=headers, what=self._what
        )
        if response.status_code == 206 and start:
            content_range = response.headers.get("content-range", "")
            if not content_range.startswith(f"bytes {start}-"):
                response.close()
                raise RegistryError(f"{self._what}: the registry resumed at the wrong offset", url=str(url))
            self._skip = 0
        elif response.status_code == 200:
            self._skip = start  # Range ignored: the whole blob again; drop what we already have
        else:
            raise self._client._error(response, self._what, url)
        self._response = response
        # No chunk size: bytes are handed on as they arrive, so a connection that
        # breaks leaves nothing stuck in a buffer and the resume offset is exact.
        self._chunks = response.iter_raw()

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._pending:
                n = min(len(buffer), len(self._pending))
                buffer[:n] = self._pending[:n]
                self._pending = self._pending[n:]
                self.offset += n
                return n
            if self._done:
                return 0
            try:
                chunk = next(self._chunks, None)
            except httpx.TransportError as exc:
                self._resume(exc)
                continue
            if chunk is None:
                self._done = True
                self._close_response()
                return 0
            if self._skip:
                drop = min(self._skip, len(chunk))
                chunk = chunk[drop:]
                self._skip -= drop
            self._pending = memoryview(chunk)

    def _resume(self, exc: httpx.TransportError) -> None:
        self._close_response()
        retry = self._client.retry
        if self.resumes + 1 >= retry.attempts:
            raise RegistryError(
                f"the connection to {self._client.registry} broke while downloading {self._what} "
                f"({self.offset} bytes in: {_describe(exc)}); gave up after {retry.attempts} attempts",
                retryable=True,
                url=str(self._client._url(f"/v2/{self._repository}/blobs/{self._digest}")),
            ) from None
        log.info("%s: connection lost at byte %d (%s); resuming", self._what, self.offset, type(exc).__name__)
        self._client._sleep(retry.backoff(self.resumes, self._client._rng))
        self.resumes += 1
        self._open(self.offset)

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        self._close_response()
        super().close()
