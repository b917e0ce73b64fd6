"""The results store of ``crawl``, ``lineage`` and ``advise``.

One database (``store.schema``) holds what a crawl learns: repositories, every
digest each tag was ever seen pointing at, images with their diff_id chains,
layers, per-layer results per detector, verdicts with findings, and the runs
themselves. SQLite is the embedded default (one file in the user's data
directory, WAL); PostgreSQL when a fleet shares the store.

Writes are idempotent: every row has a natural key (a digest, a tag and a
digest, an image and a rules version) and is written with ``ON CONFLICT``, so
judging the same digest twice, or a crawl killed and started again, stores one
row. Each image's verdict and its findings are written in one transaction.
Only the crawl's coordinator process writes; workers return their results.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from layerhound.model import Failure, Finding, ImageResult, Indicates, Kind, Verdict
from layerhound.store.configs import get_config, put_config
from layerhound.store.db import Database, StoreError, parse_db_url
from layerhound.store.kept_files import KeptManifest
from layerhound.store.layer_rows import LayerRows
from layerhound.store.schema import migrate

RESULTS_FILE = "results.sqlite3"
COMPLETE = ""
"""The ``manifests.image`` of the row that says a parent's children are all recorded."""


def default_db_url() -> str:
    """``sqlite:///`` + the user's data directory (``~/.local/share/layerhound`` on Linux)."""
    return f"sqlite:///{Path(platformdirs.user_data_dir('layerhound')) / RESULTS_FILE}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TagRow:
    """One (tag, digest) a repository was seen with."""

    repository: str
    tag: str
    digest: str
    first_observed: int
    last_observed: int
    date: str | None
    date_source: str | None


@dataclass(frozen=True)
class ImageRow:
    """One image (one platform's manifest) and its layer chain."""

    digest: str
    platform: str | None
    config_digest: str | None
    created: str | None
    diff_ids: tuple[str, ...]
    layers: tuple[str, ...]
    first_ref: str


@dataclass(frozen=True)
class LayerRow:
    """One layer blob as the images name it (what a stored walk is checked against)."""

    digest: str
    diff_id: str | None
    size: int
    media_type: str


@dataclass(frozen=True)
class VerdictRow:
    """An image's stored judgement at one rules version."""

    image: str
    rules: str
    verdict: Verdict
    reasons: tuple[str, ...]
    failure: Failure | None
    base: dict[str, Any] | None
    judged_at: int


class ResultStore:
    """The store, on one ``Database``; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.layers = LayerRows(db)

    @classmethod
    def open(cls, url: str | None = None) -> ResultStore:
        """Open (creating and migrating as needed) the store at ``url`` (default: ``default_db_url()``)."""
        url = url or default_db_url()
        db = Database.open(url)
        try:
            migrate(db)
        except StoreError:
            db.close()
            raise
        except Exception as exc:  # the driver's own error types (sqlite3, psycopg)
            db.close()
            raise StoreError(f"cannot prepare the results store {db.label}: {exc}") from exc
        return cls(db)

    @classmethod
    def create_sqlite_dir(cls, url: str | None) -> None:
        """Make the directory of a SQLite store (private to the user)."""
        dialect, target = parse_db_url(url or default_db_url())
        if dialect == "sqlite":
            path = Path(target)
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StoreError(f"cannot create {path.parent}: {exc.strerror}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------

    def begin_run(self, tool: str, rules: str, args: dict[str, Any]) -> str:
        run = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO crawl_runs (id, tool, rules, started_at, finished_at, status, counts, args)"
            " VALUES (?, ?, ?, ?, NULL, 'running', '{}', ?)",
            (run, tool, rules, int(time.time()), _json(args)),
        )
        return run

    def finish_run(self, run: str, status: str, counts: dict[str, int]) -> None:
        self.db.execute(
            "UPDATE crawl_runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
            (int(time.time()), status, _json(counts), run),
        )

    def runs(self) -> list[tuple[str, str, str, int, int | None, str, dict[str, int]]]:
        rows = self.db.query(
            "SELECT id, tool, rules, started_at, finished_at, status, counts FROM crawl_runs ORDER BY started_at"
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    # -- repositories and tags -----------------------------------------------

    def observe_repository(self, name: str, registry: str, repository: str) -> None:
        self.db.execute(
            "INSERT INTO repositories (name, registry, repository, first_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (name, registry, repository, int(time.time())),
        )

    def observe_tag(self, repository: str, tag: str, digest: str, date: str | None, date_source: str | None) -> None:
        """Record that ``repository:tag`` points at ``digest`` now (its earlier digests stay)."""
        now = int(time.time())
        pushed = date if date_source == "pushed" else None
        self.db.execute(
            "INSERT INTO tag_observations (repository, tag, digest, first_observed, last_observed, pushed_at, date,"
            " date_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repository, tag, digest) DO UPDATE SET"
            " last_observed = excluded.last_observed, date = COALESCE(excluded.date, tag_observations.date),"
            " date_source = COALESCE(excluded.date_source, tag_observations.date_source),"
            " pushed_at = COALESCE(excluded.pushed_at, tag_observations.pushed_at)",
            (repository, tag, digest, now, now, pushed, date, date_source),
        )

    def tags(self, repository: str | None = None) -> list[TagRow]:
        where, params = ("WHERE repository = ?", [repository]) if repository else ("", [])
        rows = self.db.query(
            "SELECT repository, tag, digest, first_observed, last_observed, date, date_source"
            f" FROM tag_observations {where} ORDER BY repository, tag, first_observed",
            params,
        )
        return [TagRow(*row) for row in rows]

    def repositories(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT name FROM repositories ORDER BY name")]

    # -- images --------------------------------------------------------------

    def put_children(self, parent: str, children: Sequence[tuple[str, str | None]], complete: bool = True) -> None:
        """The images (digest, platform) a tag's digest stands for (itself, or an index's manifests).

        ``complete`` False: a ``--platform`` crawl recorded only some of an
        index's children; nobody may take them for all of them.
        """
        rows = [(parent, image, platform) for image, platform in children]
        if complete:
            rows.append((parent, COMPLETE, None))
        self.db.executemany(
            "INSERT INTO manifests (parent, image, platform) VALUES (?, ?, ?) ON CONFLICT (parent, image) DO NOTHING",
            rows,
        )

    def children(self, parent: str) -> list[tuple[str, str | None]]:
        return [(r[0], r[1]) for r in self.db.query(
            "SELECT image, platform FROM manifests WHERE parent = ? AND image <> ? ORDER BY image", (parent, COMPLETE)
        )]

    def children_complete(self, parent: str) -> bool:
        """Whether every child of ``parent`` is recorded (an unfiltered crawl opened it)."""
        return self.db.one("SELECT 1 FROM manifests WHERE parent = ? AND image = ?", (parent, COMPLETE)) is not None

    def all_children(self) -> dict[str, list[str]]:
        """parent → its images, for the whole store in one query."""
        found: dict[str, list[str]] = {}
        for parent, image in self.db.query("SELECT parent, image FROM manifests WHERE image <> ?", (COMPLETE,)):
            found.setdefault(parent, []).append(image)
        return found

    def parents(self, image: str) -> list[str]:
        return [r[0] for r in self.db.query("SELECT parent FROM manifests WHERE image = ?", (image,))]

    def put_image(self, image: ImageRow) -> None:
        self.db.execute(
            "INSERT INTO images (digest, platform, config_digest, created, diff_ids, layers, first_ref)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (image.digest, image.platform, image.config_digest, image.created, _json(list(image.diff_ids)),
             _json(list(image.layers)), image.first_ref),
        )

    def put_layer(self, digest: str, diff_id: str | None, size: int, media_type: str) -> None:
        self.db.execute(
            "INSERT INTO layers (digest, diff_id, size, media_type) VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE"
            " SET diff_id = COALESCE(layers.diff_id, excluded.diff_id)",
            (digest, diff_id, size, media_type),
        )

    def layer(self, digest: str) -> LayerRow | None:
        row = self.db.one("SELECT digest, diff_id, size, media_type FROM layers WHERE digest = ?", (digest,))
        return LayerRow(row[0], row[1], int(row[2]), row[3]) if row is not None else None

    def put_kept(self, digest: str, manifest: KeptManifest) -> None:
        """Which files of a layer were kept; a complete record is never replaced by a partial one."""
        existing = self.kept(digest)
        if existing is not None and existing.complete:
            return
        self.db.execute(
            "INSERT INTO kept_layers (digest, stored_at, value) VALUES (?, ?, ?) ON CONFLICT (digest) DO UPDATE"
            " SET value = excluded.value, stored_at = excluded.stored_at",
            (digest, int(time.time()), _json(manifest.to_json())),
        )

    def kept(self, digest: str) -> KeptManifest | None:
        row = self.db.one("SELECT value FROM kept_layers WHERE digest = ?", (digest,))
        return KeptManifest.from_json(json.loads(row[0])) if row is not None else None

    def images(self) -> list[ImageRow]:
        rows = self.db.query(
            "SELECT digest, platform, config_digest, created, diff_ids, layers, first_ref FROM images ORDER BY digest"
        )
        return [ImageRow(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), tuple(json.loads(r[5])), r[6]) for r in rows]

    def image(self, digest: str) -> ImageRow | None:
        row = self.db.one(
            "SELECT digest, platform, config_digest, created, diff_ids, layers, first_ref FROM images WHERE digest = ?",
            (digest,),
        )
        if row is None:
            return None
        return ImageRow(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), tuple(json.loads(row[5])), row[6])

    # -- verdicts ------------------------------------------------------------

    def judged(self, image: str, rules: str) -> bool:
        """Whether ``image`` has a verdict other than ``error`` at ``rules`` (errors are tried again)."""
        row = self.db.one("SELECT verdict FROM verdicts WHERE image = ? AND rules = ?", (image, rules))
        return row is not None and row[0] != Verdict.ERROR.value

    def put_verdict(self, image: str, rules: str, result: ImageResult) -> None:
        """The image's verdict and findings, replacing those of an earlier judgement at the same rules."""
        failure = None
        if result.failure is not None:
            f = result.failure
            failure = _json({"kind": f.kind, "message": f.message, "status": f.status, "retryable": f.retryable})
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO verdicts (image, rules, verdict, reasons, error, base, judged_at) VALUES (?, ?, ?, ?, ?,"
                " NULL, ?) ON CONFLICT (image, rules) DO UPDATE SET verdict = excluded.verdict, reasons ="
                " excluded.reasons, error = excluded.error, judged_at = excluded.judged_at",
                (image, rules, result.verdict.value, _json(result.reasons), failure, int(time.time())),
            )
            self.db.execute("DELETE FROM findings WHERE image = ? AND rules = ?", (image, rules))
            self.db.executemany(
                "INSERT INTO findings (image, rules, seq, rule, kind, indicates, path, layer, in_final_fs, sha256,"
                " detector, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (image, rules, seq, f.rule, f.kind.value, f.indicates.value, f.path, f.layer, int(f.in_final_fs),
                     f.sha256, f.detector, _json(f.evidence))
                    for seq, f in enumerate(result.findings)
                ],
            )

    def set_base(self, image: str, rules: str, base: dict[str, Any] | None) -> None:
        self.db.execute(
            "UPDATE verdicts SET base = ? WHERE image = ? AND rules = ?",
            (_json(base) if base is not None else None, image, rules),
        )

    def verdict(self, image: str, rules: str) -> VerdictRow | None:
        row = self.db.one(
            "SELECT image, rules, verdict, reasons, error, base, judged_at FROM verdicts WHERE image = ? AND rules = ?",
            (image, rules),
        )
        return _verdict_row(row) if row is not None else None

    def previous_verdict(self, image: str, rules: str) -> VerdictRow | None:
        """The image's latest verdict at any rules version other than ``rules`` (what a re-judgement changes)."""
        row = self.db.one(
            "SELECT image, rules, verdict, reasons, error, base, judged_at FROM verdicts WHERE image = ? AND rules <> ?"
            " ORDER BY judged_at DESC, rules LIMIT 1",
            (image, rules),
        )
        return _verdict_row(row) if row is not None else None

    def verdicts(self, rules: str) -> dict[str, VerdictRow]:
        rows = self.db.query(
            "SELECT image, rules, verdict, reasons, error, base, judged_at FROM verdicts WHERE rules = ?", (rules,)
        )
        return {row[0]: _verdict_row(row) for row in rows}

    def findings(self, image: str, rules: str) -> list[Finding]:
        rows = self.db.query(
            "SELECT rule, kind, indicates, path, layer, in_final_fs, sha256, detector, evidence FROM findings"
            " WHERE image = ? AND rules = ? ORDER BY seq",
            (image, rules),
        )
        return [
            Finding(rule=r[0], kind=Kind(r[1]), indicates=Indicates(r[2]), path=r[3], layer=r[4],
                    in_final_fs=bool(r[5]), sha256=r[6], detector=r[7], evidence=json.loads(r[8]))
            for r in rows
        ]

    # -- image configs (``sources.base.ConfigMemo``) ---------------------------

    def get_blob(self, digest: str) -> bytes | None:
        return get_config(self.db, digest)

    def put_blob(self, digest: str, data: bytes) -> None:
        put_config(self.db, digest, data)

    # -- workloads -----------------------------------------------------------

    def put_workload(
        self, namespace: str, pod: str, container: str, image_ref: str, digest: str | None = None
    ) -> None:
        """A container of a pod, the image it names and (once resolved) the digest it runs."""
        self.db.execute(
            "INSERT INTO workloads (namespace, pod, container, image_ref, observed_at, digest)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, pod, container) DO UPDATE SET"
            " image_ref = excluded.image_ref, observed_at = excluded.observed_at,"
            " digest = COALESCE(excluded.digest, workloads.digest)",
            (namespace, pod, container, image_ref, int(time.time()), digest),
        )

    def workloads(self) -> list[tuple[str, str, str, str, str | None]]:
        """(namespace, pod, container, image reference, digest) of every workload seen."""
        return [(r[0], r[1], r[2], r[3], r[4]) for r in self.db.query(
            "SELECT namespace, pod, container, image_ref, digest FROM workloads ORDER BY namespace, pod, container"
        )]

    # -- for tests and comparisons ------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.transaction():
            yield

    def content(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows without the columns that say *when* (times, run ids): what two
        equivalent crawls must agree on, whatever order or interruption they had."""
        queries = {
            "repositories": "SELECT name, registry, repository FROM repositories",
            "tag_observations": "SELECT repository, tag, digest, date, date_source FROM tag_observations",
            "manifests": "SELECT parent, image, platform FROM manifests",
            "images": "SELECT digest, platform, config_digest, created, diff_ids, layers FROM images",
            "layers": "SELECT digest, diff_id, size, media_type FROM layers",
            "layer_walks": "SELECT digest, walk, diff_id, size, value FROM layer_walks",
            "layer_parts": "SELECT digest, detector, walk, value FROM layer_parts",
            "verdicts": "SELECT image, rules, verdict, reasons, error, base FROM verdicts",
            "findings": "SELECT image, rules, seq, rule, kind, indicates, path, layer, in_final_fs, sha256, detector,"
            " evidence FROM findings",
            "workloads": "SELECT namespace, pod, container, image_ref, digest FROM workloads",
        }
        return {table: sorted(self.db.query(sql), key=repr) for table, sql in queries.items()}


def _verdict_row(row: tuple[Any, ...]) -> VerdictRow:
    failure = None
    if row[4]:
        data = json.loads(row[4])
        failure = Failure(data["kind"], data["message"], data.get("status"), bool(data.get("retryable")))
    return VerdictRow(
        image=row[0],
        rules=row[1],
        verdict=Verdict(row[2]),
        reasons=tuple(json.loads(row[3])),
        failure=failure,
        base=json.loads(row[5]) if row[5] else None,
        judged_at=row[6],
    )
