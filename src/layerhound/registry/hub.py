"""Docker Hub's tag API: every tag of a Hub repository with its push date, digest and platforms.

The registry API (``/v2/<name>/tags/list``) gives tag names only. Docker Hub
also has a web API that gives, per tag, the push date (``tag_last_pushed``,
else ``last_updated``), the digest (of the index for a multi-platform tag) and
the platforms (``images[].os/architecture/variant``) — all without a manifest
GET, which would count as a pull against the Hub rate limit::

    GET https://hub.docker.com/v2/namespaces/<ns>/repositories/<repo>/tags?page_size=100
    {"count": 123, "next": "https://hub.docker.com/v2/…&page=2", "previous": null,
     "results": [{"name": "12", "tag_last_pushed": "2024-03-12T01:23:45.123456Z",
                  "last_updated": "…", "digest": "sha256:…", "media_type": "…",
                  "images": [{"digest": "sha256:…", "os": "linux", "architecture": "arm64",
                              "variant": "v8", …}, …]}, …]}

Pages are followed through ``next`` (same origin only). The API host is
``https://hub.docker.com`` unless ``LAYERHOUND_HUB_API`` (or the ``api``
argument) says otherwise — the tests point it at a fake. Plain HTTP is
allowed only for a host declared with ``--insecure-registry``. Requests are
anonymous: a private repository looks the same as a missing one.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from layerhound import __version__
from layerhound.errors import RegistryError, redact_url
from layerhound.registry import ENV_HUB_API
from layerhound.registry.client import DIGEST_RE, MAX_TAG_PAGES, ssl_context, url_join
from layerhound.registry.retry import RETRY_STATUSES, parse_retry_after
from layerhound.registry.settings import RegistrySettings
from layerhound.untrusted import JSON_ERRORS

log = logging.getLogger(__name__)

DEFAULT_HUB_API = "https://hub.docker.com"
PAGE_SIZE = 100
"""The most the Hub API gives per page."""
MAX_PAGE_BYTES = 16 * 1024 * 1024
MAX_ERROR_BODY = 64 * 1024
_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def parse_timestamp(value: object) -> datetime.datetime | None:
    """An RFC 3339 / ISO 8601 time as an aware UTC datetime; None when absent or unreadable.

    Go writes up to nine fractional digits (Python reads six) and uses the zero
    time ``0001-01-01T00:00:00Z`` for "never": that is None too. A time
    without an offset is taken as UTC.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    when = when.astimezone(datetime.UTC)
    if when.year <= 1:
        return None
    return when


@dataclass(frozen=True)
class HubImage:
    """One entry of a tag's ``images``: a platform manifest."""

    digest: str | None
    os: str | None
    architecture: str | None
    variant: str | None = None

    @property
    def platform(self) -> str | None:
        """``os/arch[/variant]``; None when unknown (attestations are listed as ``unknown/unknown``)."""
        if not self.os or not self.architecture or (self.os, self.architecture) == ("unknown", "unknown"):
            return None
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class HubTag:
    """One tag as the Hub API describes it."""

    name: str
    digest: str | None
    """The tag's manifest or index digest (None for some very old tags)."""
    pushed: datetime.datetime | None
    """``tag_last_pushed``, else ``last_updated``."""
    media_type: str | None
    images: tuple[HubImage, ...]


def hub_api_url(environ: Mapping[str, str] | None = None) -> str:
    """``LAYERHOUND_HUB_API`` when set, else ``https://hub.docker.com``."""
    env = os.environ if environ is None else environ
    return (env.get(ENV_HUB_API) or "").strip() or DEFAULT_HUB_API


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_tag(item: object) -> HubTag | None:
    """A ``results`` entry; None when it has no name."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        return None
    digest = _text(item.get("digest"))
    images: list[HubImage] = []
    raw_images = item.get("images")
    for image in raw_images if isinstance(raw_images, list) else []:
        if isinstance(image, dict):
            image_digest = _text(image.get("digest"))
            images.append(
                HubImage(
                    image_digest if image_digest and DIGEST_RE.fullmatch(image_digest) else None,
                    _text(image.get("os")),
                    _text(image.get("architecture")),
                    _text(image.get("variant")),
                )
            )
    pushed = parse_timestamp(item.get("tag_last_pushed")) or parse_timestamp(item.get("last_updated"))
    return HubTag(
        name=item["name"],
        digest=digest if digest and DIGEST_RE.fullmatch(digest) else None,
        pushed=pushed,
        media_type=_text(item.get("media_type")),
        images=tuple(images),
    )


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _netloc(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port else host


class HubClient:
    """Docker Hub's tag API (anonymous), with the registry client's retry rules."""

    def __init__(
        self,
        options: RegistrySettings,
        api: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        text = api or hub_api_url(options.environ)
        base = httpx.URL(text.rstrip("/"))
        if base.scheme not in ("http", "https") or not base.host:
            raise RegistryError(f"the Docker Hub API must be an http(s) URL, not {redact_url(text)!r}")
        if base.scheme == "http" and not options.is_insecure(_netloc(base)):
            raise RegistryError(
                f"the Docker Hub API {redact_url(text)} is plain HTTP; declare it with "
                f"--insecure-registry {_netloc(base)} to allow that"
            )
        self.base = base
        self.options = options
        self.retry = options.retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.requests = 0
        """Requests sent (for tests and diagnostics)."""
        self._http = httpx.Client(
            verify=ssl_context(options.ca_file),
            timeout=httpx.Timeout(options.timeout, connect=min(options.timeout, 15.0)),
            follow_redirects=False,
            headers={"User-Agent": f"layerhound/{__version__}", "Accept": "application/json"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tags_url(self, namespace: str, repository: str, page_size: int = PAGE_SIZE) -> httpx.URL:
        for part in (namespace, repository):
            if not _NAME_RE.fullmatch(part):
                raise RegistryError(f"invalid Docker Hub repository {namespace}/{repository}")
        path = f"{self.base.path.rstrip('/')}/v2/namespaces/{namespace}/repositories/{repository}/tags"
        return self.base.copy_with(raw_path=path.encode("ascii")).copy_merge_params({"page_size": str(page_size)})

    def list_tags(self, namespace: str, repository: str, page_size: int = PAGE_SIZE) -> list[HubTag]:
        """Every tag of ``namespace/repository``, following ``next`` pages."""
        url: httpx.URL | None = self.tags_url(namespace, repository, page_size)
        what = f"the tags of docker.io/{namespace}/{repository} (Docker Hub API)"
        seen: set[str] = set()
        tags: list[HubTag] = []
        while url is not None:
            if len(seen) >= MAX_TAG_PAGES:
                raise RegistryError(f"{what}: more than {MAX_TAG_PAGES} pages", url=str(url))
            seen.add(str(url))
            body = self._get_json(url, what, f"docker.io/{namespace}/{repository}")
            results = body.get("results")
            if not isinstance(results, list):
                raise RegistryError(f"{what}: the answer has no list of results", url=str(url))
            tags.extend(tag for item in results if (tag := parse_tag(item)) is not None)
            following = body.get("next")
            url = None
            if isinstance(following, str) and following:
                target = url_join(self.base, following)
                if _origin(target) != _origin(self.base):
                    raise RegistryError(f"{what}: the next page is on another host", url=str(target))
                if str(target) not in seen:
                    url = target
        return tags

    # ------------------------------------------------------------ requests

    def _get_json(self, url: httpx.URL, what: str, name: str) -> dict[str, Any]:
        response = self._get(url, what)
        status = response.status_code
        if status != 200:
            raise self._error(response, what, name, url)
        if len(response.content) > MAX_PAGE_BYTES:
            raise RegistryError(f"{what}: a page is larger than {MAX_PAGE_BYTES} bytes", url=str(url))
        try:
            body = json.loads(response.content)
        except JSON_ERRORS:
            raise RegistryError(f"{what}: the answer is not JSON", url=str(url)) from None
        if not isinstance(body, dict):
            raise RegistryError(f"{what}: the answer is not a JSON object", url=str(url))
        return body

    def _get(self, url: httpx.URL, what: str) -> httpx.Response:
        """A GET with bounded retries on 5xx and dropped connections, and ``429`` honoured."""
        retries = 0
        while True:
            self.requests += 1
            try:
                response = self._http.get(url)
            except httpx.TransportError as exc:
                if retries + 1 >= self.retry.attempts:
                    reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                    raise RegistryError(
                        f"cannot reach the Docker Hub API ({_netloc(url)}) for {what}: {reason} "
                        f"(gave up after {self.retry.attempts} attempts)",
                        retryable=True,
                        url=str(url),
                    ) from None
                log.info("GET %s failed (%s); retrying", redact_url(str(url)), type(exc).__name__)
                self._sleep(self.retry.backoff(retries, self._rng))
                retries += 1
                continue
            status = response.status_code
            if status != 429 and status not in RETRY_STATUSES:
                return response
            wait = _retry_after(response) if status == 429 else None
            too_long = wait is not None and wait > self.retry.max_retry_after
            if retries + 1 >= self.retry.attempts or too_long:
                after = f"; it asks to retry after {wait:.0f} s" if wait is not None else ""
                label = "too many requests (rate limited)" if status == 429 else f"{status} {response.reason_phrase}"
                raise RegistryError(
                    f"the Docker Hub API answered {label} for {what}{after} (gave up after {retries + 1} attempts)",
                    status=status,
                    retryable=True,
                    url=str(url),
                )
            delay = wait if wait is not None else self.retry.backoff(retries, self._rng)
            log.info("GET %s -> %d; retrying in %.1f s", redact_url(str(url)), status, delay)
            self._sleep(delay)
            retries += 1

    def _error(self, response: httpx.Response, what: str, name: str, url: httpx.URL) -> RegistryError:
        status = response.status_code
        if status == 404:
            message = (
                f"repository not found: {name} does not exist on Docker Hub "
                "(or it is private: the Hub API is asked anonymously)"
            )
        elif status in (401, 403):
            message = f"access denied: the Docker Hub API does not allow reading {what}"
        else:
            detail = ""
            try:
                body = json.loads(response.content[:MAX_ERROR_BODY])
                if isinstance(body, dict):
                    detail = str(body.get("message") or body.get("detail") or "")[:200]
            except JSON_ERRORS:
                pass
            message = f"the Docker Hub API answered {status} for {what}: {detail or response.reason_phrase}"
        return RegistryError(message, status=status, retryable=status >= 500, url=str(url))


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After``, else the Hub's ``X-RateLimit-Reset`` (epoch seconds)."""
    wait = parse_retry_after(response.headers.get("retry-after"))
    if wait is not None:
        return wait
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    if reset.isdigit():
        return max(0.0, float(reset) - time.time())
    return None
