"""The store's tables, as numbered migrations applied when a database is opened.

One schema serves the per-layer cache of ``scan`` (it uses the layer tables
only) and the results store of ``crawl``/``lineage``/``advise``. A migration
runs once, inside a transaction that also records it in
``schema_migrations``, under a lock that makes concurrent openers wait (SQLite:
the write lock of ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so
several worker processes opening one store at the same time apply it once.

Tables (version 1)::

    layer_walks         (digest, walk) → diff_id, size, value: a layer's walk part
    layer_parts         (digest, detector, walk) → value: one detector's part of a layer
    configs             digest → image config bytes (verified again when read)
    repositories        name (registry/repository)
    tag_observations    (repository, tag, digest) → first/last observed, pushed_at, date, date_source:
                        a tag that moved keeps every digest it ever pointed to
    manifests           (parent, image) → platform: the images a tag's digest (index or manifest) stands for
    images              digest → platform, config digest, created, the ordered diff_id chain, layer digests
    layers              digest → diff_id, size, media type
    verdicts            (image, rules) → verdict, reasons, error (kind, status, retryable), base, judged_at
    findings            (image, rules, seq) → the finding's fields
    crawl_runs          id → tool and rules versions, started/finished, status, counts, arguments
    workloads           (namespace, pod, container) → the image reference it runs, and when seen
                        (version 2: the digest it resolved to)
    kept_layers         digest → the kept files of the layer: [path, sha256]…, complete (version 3)

Times are Unix seconds (BIGINT); documents are JSON text.
"""

from __future__ import annotations

import time

from layerhound.store.db import Database, StoreError

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "layer results per detector; repositories, tags, images, verdicts, findings, runs, workloads",
        [
            """CREATE TABLE IF NOT EXISTS layer_walks (
                digest TEXT NOT NULL, walk TEXT NOT NULL, diff_id TEXT, size BIGINT NOT NULL,
                stored_at BIGINT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (digest, walk))""",
            """CREATE TABLE IF NOT EXISTS layer_parts (
                digest TEXT NOT NULL, detector TEXT NOT NULL, walk TEXT NOT NULL,
                stored_at BIGINT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (digest, detector, walk))""",
            """CREATE TABLE IF NOT EXISTS configs (
                digest TEXT PRIMARY KEY, stored_at BIGINT NOT NULL, value {blob} NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS repositories (
                name TEXT PRIMARY KEY, registry TEXT NOT NULL, repository TEXT NOT NULL, first_seen BIGINT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS tag_observations (
                repository TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
                first_observed BIGINT NOT NULL, last_observed BIGINT NOT NULL,
                pushed_at TEXT, date TEXT, date_source TEXT, PRIMARY KEY (repository, tag, digest))""",
            """CREATE TABLE IF NOT EXISTS manifests (
                parent TEXT NOT NULL, image TEXT NOT NULL, platform TEXT, PRIMARY KEY (parent, image))""",
            """CREATE TABLE IF NOT EXISTS images (
                digest TEXT PRIMARY KEY, platform TEXT, config_digest TEXT, created TEXT,
                diff_ids TEXT NOT NULL, layers TEXT NOT NULL, first_ref TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS layers (
                digest TEXT PRIMARY KEY, diff_id TEXT, size BIGINT NOT NULL, media_type TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS verdicts (
                image TEXT NOT NULL, rules TEXT NOT NULL, verdict TEXT NOT NULL, reasons TEXT NOT NULL,
                error TEXT, base TEXT, judged_at BIGINT NOT NULL, PRIMARY KEY (image, rules))""",
            """CREATE TABLE IF NOT EXISTS findings (
                image TEXT NOT NULL, rules TEXT NOT NULL, seq INTEGER NOT NULL, rule TEXT NOT NULL,
                kind TEXT NOT NULL, indicates TEXT NOT NULL, path TEXT NOT NULL, layer TEXT,
                in_final_fs INTEGER NOT NULL, sha256 TEXT, detector TEXT NOT NULL, evidence TEXT NOT NULL,
                PRIMARY KEY (image, rules, seq))""",
            """CREATE TABLE IF NOT EXISTS crawl_runs (
                id TEXT PRIMARY KEY, tool TEXT NOT NULL, rules TEXT NOT NULL, started_at BIGINT NOT NULL,
                finished_at BIGINT, status TEXT NOT NULL, counts TEXT NOT NULL, args TEXT NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS workloads (
                namespace TEXT NOT NULL, pod TEXT NOT NULL, container TEXT NOT NULL, image_ref TEXT NOT NULL,
                observed_at BIGINT NOT NULL, PRIMARY KEY (namespace, pod, container))""",
            "CREATE INDEX IF NOT EXISTS tag_observations_digest ON tag_observations (digest)",
            "CREATE INDEX IF NOT EXISTS manifests_image ON manifests (image)",
        ],
    ),
    (
        2,
        "the digest each workload runs, so the store can say which pods run an infected image",
        ["ALTER TABLE workloads ADD COLUMN digest TEXT"],
    ),
    (
        3,
        "which files of each layer a crawl kept (store.kept_files), so rejudge needs no registry",
        ["""CREATE TABLE IF NOT EXISTS kept_layers (
            digest TEXT PRIMARY KEY, stored_at BIGINT NOT NULL, value TEXT NOT NULL)"""],
    ),
]

LATEST = MIGRATIONS[-1][0]
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
)


def current_version(db: Database) -> int:
    """The highest migration applied (0: none, not even ``schema_migrations``); creates nothing.

    No DDL outside the lock: two PostgreSQL sessions racing through ``CREATE TABLE
    IF NOT EXISTS`` both try to create the table, and one fails (a unique violation in
    ``pg_type``).
    """
    if not db.has_table("schema_migrations"):
        return 0
    row = db.one("SELECT MAX(version) FROM schema_migrations")
    return int(row[0]) if row and row[0] is not None else 0


def migrate(db: Database) -> int:
    """Apply every migration the database lacks; returns the version it is at.

    A database newer than this layerhound is refused: its tables may mean
    something this version does not know.
    """
    current = current_version(db)
    if current > LATEST:
        raise StoreError(f"{db.label} has schema version {current}; this layerhound knows up to {LATEST}: upgrade it")
    if current == LATEST:
        return current
    with db.transaction():
        db.lock_schema()
        db.execute(_MIGRATIONS_TABLE)
        current = current_version(db)  # another process may have just done it
        for version, _what, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                db.execute(statement.format(blob=db.blob))
            db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, int(time.time())))
            current = version
    return current
