"""Tag history: every tag of a repository with its date, digest and platforms.

``tag_history`` (and ``list_tag_history``, its list of tags only) is what
``layerhound tags`` prints and what a crawl builds on. Two ways in:

- **Docker Hub** (``docker.io/…``): the Hub API (``layerhound.registry.hub``)
  gives every tag's push date, digest and platforms in pages of 100. No
  manifest is fetched at all: on Hub every manifest GET counts as a pull. A
  tag the API lists without a digest is resolved with a ``HEAD`` (not a pull).
- **Any other registry**: ``/v2/<name>/tags/list`` (``n``/``last``, ``Link``
  pages), then per tag a ``HEAD`` for the digest and media type. Registries
  know no dates, so the date is the image config's ``created`` (the build
  time, ``date_source`` "created"): that costs the manifest and the config
  blob, fetched by digest once per distinct digest, and is skipped with
  ``dates=False``. An index is always fetched (its platforms are in it); with
  dates, each platform's config too, and the index's date is the newest of
  its platforms' ``created``.

Filters: ``globs`` select tag names (``fnmatch``, case-sensitive, any match)
before anything per tag is fetched; ``platform`` (``OS/ARCH[/VARIANT]``)
keeps tags with an image of that platform and lists only those platforms (a
tag whose platform cannot be told without a fetch — a single manifest with
``dates=False`` — is kept, as ``--platform`` does for scans); ``since`` and
``until`` keep tags whose date is inside the window, bounds included. A tag
without a date is excluded when a window is given, and counted.

A tag whose manifest cannot be read (gone between the listing and the
``HEAD``, schema 1, a config that fails its digest) keeps its place with an
``error``; failures of the registry itself (auth, unreachable, rate limit)
stop the whole listing.
"""

from __future__ import annotations

import datetime
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Generic, Literal, TypeVar

from layerhound.errors import BlobError, DigestMismatch, ManifestError, ReferenceError_, RegistryError, UsageError
from layerhound.registry.client import MAX_MANIFEST_SIZE, ManifestDescriptor, RegistryClient, digest_of
from layerhound.registry.credentials import DOCKER_HUB
from layerhound.registry.hub import HubClient, HubTag, parse_timestamp
from layerhound.registry.session import RegistrySession
from layerhound.sources.base import ConfigMemo, load_json, platform_of
from layerhound.sources.manifest import (
    MANIFEST_TYPES,
    DocKind,
    IndexWalk,
    PlatformFilter,
    classify,
    parse_platform,
    walk_index,
)
from layerhound.sources.refs import DOCKER, TRANSPORTS, UNSUPPORTED_TRANSPORTS, parse_docker_name

DateSource = Literal["pushed", "created"]
KnownDigest = Callable[[str], "Sequence[tuple[str | None, datetime.datetime | None]] | None"]
"""What a caller already knows of a tag's digest: its images' (platform, created), or None.

A crawl passes its store here, so re-listing a repository fetches no manifest
or config it has seen before (on Docker Hub a manifest GET is a pull)."""
Source = Literal["docker-hub-api", "registry"]
MAX_CONFIG_SIZE = MAX_MANIFEST_SIZE
_T = TypeVar("_T")
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)


@dataclass(frozen=True)
class TagInfo:
    """One tag of a repository."""

    name: str
    digest: str | None
    """The manifest's digest, or the index's for a multi-platform tag (None when it could not be resolved)."""
    date: datetime.datetime | None
    """Aware, UTC; None when unknown."""
    date_source: DateSource | None
    """``pushed``: the registry's push date (Docker Hub); ``created``: the image config's build time."""
    platforms: tuple[str, ...] = ()
    """``os/arch[/variant]`` of its images (only those matching a platform filter); empty when unknown."""
    media_type: str | None = None
    error: str | None = None
    """Why the tag could not be described completely (the listing still names it)."""


@dataclass(frozen=True)
class DateWindow:
    """``since <= date < before`` (``before`` is exclusive; either may be open)."""

    since: datetime.datetime | None = None
    before: datetime.datetime | None = None

    @property
    def active(self) -> bool:
        return self.since is not None or self.before is not None

    @property
    def until(self) -> datetime.datetime | None:
        """The last instant included (``before`` minus one microsecond)."""
        return None if self.before is None else self.before - _ONE_MICROSECOND

    def contains(self, when: datetime.datetime) -> bool:
        return (self.since is None or when >= self.since) and (self.before is None or when < self.before)


@dataclass(frozen=True)
class TagHistory:
    """What ``tag_history`` found, with what its filters left out."""

    repository: str
    """``registry/repository``, e.g. ``docker.io/library/debian``."""
    source: Source
    tags: tuple[TagInfo, ...]
    """Newest first; tags without a date last, by name."""
    listed: int
    """Distinct tags the registry listed."""
    excluded_by_name: int = 0
    excluded_by_platform: int = 0
    excluded_by_date: int = 0
    """Dated, but outside the window."""
    excluded_undated: int = 0
    """No date at all while a window was given."""
    problems: tuple[TagInfo, ...] = ()
    """Every tag with an ``error``, shown or not."""
    window: DateWindow = field(default_factory=DateWindow)
    globs: tuple[str, ...] = ()
    platform: str = "all"
    dates: bool = True
    """Whether dates were looked up (always, from the Hub API, on Docker Hub)."""


# ---------------------------------------------------------------- arguments


def parse_repository(text: str) -> tuple[str, str]:
    """``docker://HOST/NAME`` or a Docker Hub name → (registry, repository); no tag or digest allowed."""
    raw = text.strip()
    prefix = raw.partition(":")[0]
    if raw.startswith(f"{DOCKER}://"):
        raw = raw[len(DOCKER) + 3 :]
    elif "://" in raw or (prefix in TRANSPORTS + UNSUPPORTED_TRANSPORTS and ":" in raw):
        raise UsageError(f"tags are listed for registry repositories: docker://HOST/NAME or a Docker Hub name, "
                         f"not {text!r}")
    last = raw.rsplit("/", 1)[-1]
    if "@" in raw or ":" in last:
        raise UsageError(f"{text!r}: give a repository without a tag or digest (every tag is listed)")
    try:
        registry, repository, _tag, _digest = parse_docker_name(raw)
    except ReferenceError_ as exc:
        raise UsageError(str(exc)) from None
    return registry, repository


def parse_date_bound(text: str, *, end: bool, option: str = "date") -> datetime.datetime:
    """``--since``/``--until``: ``YYYY-MM-DD`` or an ISO 8601 date-time (UTC unless it has an offset).

    A whole day is the start of that day for ``since`` and the start of the
    next day (exclusive) for ``until``; a date-time bound is inclusive, so
    ``until`` returns that instant plus one microsecond (exclusive).
    """
    value = text.strip()
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        day = None
    if day is not None and len(value) == 10:
        start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
        return start + datetime.timedelta(days=1) if end else start
    when = parse_timestamp(value) if "T" in value.upper() or " " in value else None
    if when is None:
        raise UsageError(
            f"{option}: {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time (e.g. 2024-03-01T12:00:00Z)"
        )
    return when + _ONE_MICROSECOND if end else when


def _bound(value: str | datetime.date | None, *, end: bool, option: str) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_date_bound(value, end=end, option=option)
    if isinstance(value, datetime.datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        when = when.astimezone(datetime.UTC)
        return when + _ONE_MICROSECOND if end else when
    start = datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    return start + datetime.timedelta(days=1) if end else start


def date_window(
    since: str | datetime.date | None = None, until: str | datetime.date | None = None
) -> DateWindow:
    """The window of ``--since``/``--until`` (strings as on the command line, or dates/datetimes)."""
    window = DateWindow(_bound(since, end=False, option="--since"), _bound(until, end=True, option="--until"))
    if window.since is not None and window.before is not None and window.since >= window.before:
        raise UsageError("--since is after --until: no tag can be in that window")
    return window


def name_matches(name: str, globs: Sequence[str]) -> bool:
    return not globs or any(fnmatch.fnmatchcase(name, glob) for glob in globs)


# ---------------------------------------------------------------- the listing


def list_tag_history(
    repo_ref: str,
    session: RegistrySession,
    since: str | datetime.date | None = None,
    until: str | datetime.date | None = None,
    globs: Sequence[str] = (),
    platform: str = "all",
    *,
    dates: bool = True,
    hub_api: str | None = None,
) -> list[TagInfo]:
    """The tags of ``repo_ref`` that pass the filters (see ``tag_history``)."""
    return list(
        tag_history(repo_ref, session, since, until, globs, platform, dates=dates, hub_api=hub_api).tags
    )


def tag_history(
    repo_ref: str,
    session: RegistrySession,
    since: str | datetime.date | None = None,
    until: str | datetime.date | None = None,
    globs: Sequence[str] = (),
    platform: str = "all",
    *,
    dates: bool = True,
    hub_api: str | None = None,
    page_size: int | None = None,
    known: KnownDigest | None = None,
    configs: ConfigMemo | None = None,
) -> TagHistory:
    """Every tag of a repository (``docker://HOST/NAME`` or a Docker Hub name), filtered.

    Raises ``UsageError`` for bad arguments and ``RegistryError`` when the
    repository does not exist or the registry fails. ``hub_api`` overrides
    the Docker Hub API URL (else ``LAYERHOUND_HUB_API``, else hub.docker.com);
    ``page_size`` is the ``n`` of ``/tags/list`` (None: the registry's default).
    ``known`` and ``configs`` let a caller with a store spare fetches: digests it
    has described already, and image configs it keeps (read and written).
    """
    registry, repository = parse_repository(repo_ref)
    window = date_window(since, until)
    wanted = parse_platform(platform)
    globs = tuple(globs)
    if window.active and not dates and registry != DOCKER_HUB:
        raise UsageError("--since/--until need dates: they cannot be combined with --no-dates")
    if registry == DOCKER_HUB:
        source: Source = "docker-hub-api"
        listing = _from_hub(session, repository, globs, wanted, window, hub_api)
        dates = True
    else:
        source = "registry"
        listing = _from_registry(
            session.client(registry), repository, globs, wanted, dates, session, page_size, known, configs
        )

    shown: list[TagInfo] = []
    problems: list[TagInfo] = []
    by_platform = by_date = undated = 0
    for tag in listing.tags:
        kept = _keep_platforms(tag.images, wanted)
        images = tag.images if kept is None else kept
        date, date_source = _date_of(tag.pushed, [i.created for i in images if i.created is not None])
        info = TagInfo(
            name=tag.name,
            digest=tag.digest,
            date=date,
            date_source=date_source,
            platforms=tuple(dict.fromkeys(i.platform for i in images if i.platform)),
            media_type=tag.media_type,
            error=tag.error,
        )
        if info.error:
            problems.append(info)
        if kept is None:
            by_platform += 1
        elif not window.active:
            shown.append(info)
        elif date is None:
            undated += 1
        elif window.contains(date):
            shown.append(info)
        else:
            by_date += 1
    shown.sort(key=_order)
    return TagHistory(
        repository=f"{registry}/{repository}",
        source=source,
        tags=tuple(shown),
        listed=listing.listed,
        excluded_by_name=listing.listed - len(listing.tags),
        excluded_by_platform=by_platform,
        excluded_by_date=by_date,
        excluded_undated=undated,
        problems=tuple(problems),
        window=window,
        globs=globs,
        platform=platform,
        dates=dates,
    )


def _date_of(
    pushed: datetime.datetime | None, created: Sequence[datetime.datetime]
) -> tuple[datetime.datetime | None, DateSource | None]:
    """The push date when the registry knows it, else the newest ``created`` of the tag's images."""
    if pushed is not None:
        return pushed, "pushed"
    if created:
        return max(created), "created"
    return None, None


def _order(tag: TagInfo) -> tuple[bool, float, str]:
    return (tag.date is None, -tag.date.timestamp() if tag.date else 0.0, tag.name)


# ---------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Image:
    platform: str | None
    created: datetime.datetime | None = None


@dataclass(frozen=True)
class _Raw:
    """A tag before filtering."""

    name: str
    digest: str | None
    media_type: str | None
    images: tuple[_Image, ...]
    pushed: datetime.datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Listing:
    listed: int
    tags: list[_Raw]
    """The tags whose names matched."""


@dataclass(frozen=True)
class _Document:
    """What one manifest or index says (by digest, fetched once)."""

    media_type: str | None
    images: tuple[_Image, ...]
    error: str | None = None


def _keep_platforms(images: Sequence[_Image], wanted: PlatformFilter | None) -> list[_Image] | None:
    """The images a platform filter keeps; None when the tag is excluded.

    Images of unknown platform are kept, and so is a tag without images: a
    filter must not hide what it cannot judge.
    """
    if wanted is None:
        return list(images)
    kept = [i for i in images if i.platform is None or wanted.matches(i.platform)]
    return kept if kept or not images else None


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _map(session: RegistrySession, function: Callable[[Any], _T], items: Sequence[Any]) -> list[_T]:
    """``function`` over ``items``, ``max_concurrency`` at a time; the first exception cancels the rest."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(session.settings.max_concurrency, len(items))) as pool:
        futures = [pool.submit(function, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class _Once(Generic[_T]):
    """Compute each key once, even from several threads (later callers wait for the first)."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._futures: dict[str, Future[_T]] = {}

    def get(self, key: str, compute: Callable[[], _T]) -> _T:
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = self._futures[key] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result()

    def peek(self, key: str) -> _T | None:
        """The value already computed for ``key`` (None if none, or if it failed)."""
        with self._lock:
            future = self._futures.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()


def _tag_problem(exc: Exception) -> str | None:
    """A failure that concerns one tag (returned as its error), or None for one that stops the listing."""
    if isinstance(exc, ManifestError | BlobError):
        return str(exc)
    if isinstance(exc, RegistryError) and exc.status == 404:
        return str(exc)
    return None


def _head(client: RegistryClient, repository: str, name: str) -> ManifestDescriptor | str:
    try:
        return client.resolve(repository, name)
    except (RegistryError, ManifestError, BlobError) as exc:
        problem = _tag_problem(exc)
        if problem is None:
            raise
        return problem


def _from_hub(
    session: RegistrySession,
    repository: str,
    globs: tuple[str, ...],
    wanted: PlatformFilter | None,
    window: DateWindow,
    api: str | None,
) -> _Listing:
    namespace, _, name = repository.partition("/")
    if not name or "/" in name:
        raise UsageError(f"Docker Hub repositories are NAMESPACE/NAME, not {repository!r}")
    with HubClient(session.settings, api) as hub:
        found: list[HubTag] = hub.list_tags(namespace, name)
    distinct = {tag.name: tag for tag in reversed(found)}  # the first listing of a name wins
    ordered = [distinct[n] for n in _unique(t.name for t in found)]
    selected = [t for t in ordered if name_matches(t.name, globs)]

    def shown(tag: HubTag) -> bool:
        """Whether the filters will keep a tag (its date and platforms are known already)."""
        images = [_Image(i.platform) for i in tag.images if i.platform is not None]
        in_window = not window.active or (tag.pushed is not None and window.contains(tag.pushed))
        return in_window and _keep_platforms(images, wanted) is not None

    # A HEAD (no pull) only for tags without a digest that will be shown.
    unresolved = [t.name for t in selected if t.digest is None and shown(t)]
    heads: dict[str, ManifestDescriptor | str] = {}
    if unresolved:
        client = session.client(DOCKER_HUB)
        heads = dict(zip(unresolved, _map(session, lambda n: _head(client, repository, n), unresolved), strict=True))
    raws: list[_Raw] = []
    for tag in selected:
        images = tuple(_Image(i.platform) for i in tag.images if i.platform is not None)
        digest, media_type, error = tag.digest, tag.media_type, None
        head = heads.get(tag.name)
        if isinstance(head, ManifestDescriptor):
            digest, media_type = head.digest, media_type or head.media_type or None
        elif isinstance(head, str):
            error = head
        raws.append(_Raw(tag.name, digest, media_type, images, pushed=tag.pushed, error=error))
    return _Listing(len(ordered), raws)


def _from_registry(
    client: RegistryClient,
    repository: str,
    globs: tuple[str, ...],
    wanted: PlatformFilter | None,
    dates: bool,
    session: RegistrySession,
    page_size: int | None,
    known: KnownDigest | None = None,
    configs: ConfigMemo | None = None,
) -> _Listing:
    names = _unique(client.list_tags(repository, page_size=page_size))
    selected = [n for n in names if name_matches(n, globs)]
    heads = _map(session, lambda n: _head(client, repository, n), selected)
    reader = _Reader(client, repository, wanted, dates, known, configs)

    def describe(pair: tuple[str, ManifestDescriptor | str]) -> _Raw:
        name, head = pair
        if isinstance(head, str):
            return _Raw(name, None, None, (), error=head)
        media_type = head.media_type or None
        if not dates and media_type in MANIFEST_TYPES:
            return _Raw(name, head.digest, media_type, (_Image(None),))  # platform and date need the config
        document = reader.document(head.digest)
        return _Raw(name, head.digest, document.media_type or media_type, document.images, error=document.error)

    return _Listing(len(names), _map(session, describe, list(zip(selected, heads, strict=True))))


class _Reader:
    """Manifests, indexes and configs of one repository, each digest fetched once."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        wanted: PlatformFilter | None,
        dates: bool,
        known: KnownDigest | None = None,
        configs: ConfigMemo | None = None,
    ) -> None:
        self.known = known
        self.configs = configs
        self.client = client
        self.repository = repository
        self.wanted = wanted
        self.dates = dates
        self._documents: _Once[_Document] = _Once()
        self._raw: _Once[tuple[dict[str, Any], DocKind, str | None]] = _Once()
        self._configs: _Once[dict[str, Any]] = _Once()

    def document(self, digest: str) -> _Document:
        """What a tag's digest (manifest or index) says: its images' platforms and dates."""
        described = self.known(digest) if self.known is not None else None
        if described:  # the platform filter applies later, as to fetched ones
            return _Document(None, tuple(_Image(platform, created) for platform, created in described))
        return self._documents.get(digest, lambda: self._describe(digest))

    def _fetch(self, digest: str) -> tuple[dict[str, Any], DocKind, str | None]:
        """A manifest or index by digest, parsed and classified; fetched once per listing."""

        def get() -> tuple[dict[str, Any], DocKind, str | None]:
            what = f"{self.client.registry}/{self.repository}@{digest}"
            fetched = self.client.get_manifest(self.repository, digest)
            doc = load_json(fetched.data, what)
            kind = classify(doc, what)
            declared = doc.get("mediaType")
            media_type = declared if isinstance(declared, str) and declared else fetched.media_type or None
            return doc, kind, media_type

        return self._raw.get(digest, get)

    def _describe(self, digest: str) -> _Document:
        what = f"{self.client.registry}/{self.repository}@{digest}"
        errors: list[str] = []

        def read(child: str) -> tuple[dict[str, Any], DocKind] | None:
            try:
                doc, kind, _ = self._fetch(child)
            except (RegistryError, ManifestError, BlobError) as exc:
                problem = _tag_problem(exc)
                if problem is None:
                    raise
                errors.append(problem)
                return None
            return doc, kind

        walk = IndexWalk()
        images: list[_Image] = []
        leaves = walk_index(
            {"digest": digest}, read, what, wanted=self.wanted, strict=False, walk=walk, read_manifests=self.dates
        )
        for leaf in leaves:
            if leaf.manifest is None or not self.dates:
                images.append(_Image(leaf.platform))
                continue
            described = self._manifest(leaf.manifest, what)
            errors.extend([described.error] if described.error else [])
            for image in described.images:
                images.append(_Image(leaf.platform or image.platform, image.created))
        images.extend(_Image(platform) for platform in walk.available)  # filtered later, counted there
        errors.extend(walk.problems)
        media_type = self._raw.peek(digest)
        return _Document(media_type[2] if media_type else None, tuple(images), errors[0] if errors else None)

    def _manifest(self, doc: dict[str, Any], what: str) -> _Document:
        """One image manifest's platform and build date, from its config."""
        config = doc.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str):
            return _Document(None, (_Image(None),), f"{what}: the manifest names no config")
        try:
            body = self._configs.get(digest, lambda: self._config(digest, what))
        except (RegistryError, ManifestError, BlobError) as exc:
            problem = _tag_problem(exc)
            if problem is None:
                raise
            return _Document(None, (_Image(None),), problem)
        return _Document(None, (_Image(platform_of(body), parse_timestamp(body.get("created"))),))

    def _config(self, digest: str, what: str) -> dict[str, Any]:
        data = self.configs.get_blob(digest) if self.configs is not None else None
        if data is None:
            with self.client.open_blob(self.repository, digest) as stream:
                data = stream.read(MAX_CONFIG_SIZE + 1)
            if len(data) > MAX_CONFIG_SIZE:
                raise ManifestError(f"{what}: the image config is larger than {MAX_CONFIG_SIZE} bytes")
            actual = digest_of(data, digest.split(":", 1)[0])
            if actual != digest:
                raise DigestMismatch(digest, actual, f"{what}: image config")
            if self.configs is not None:
                self.configs.put_blob(digest, data)
        return load_json(data, f"{what}: image config")

