"""Results kept between runs.

- ``db``: one seam over SQLite and PostgreSQL; ``schema``: the tables, as migrations.
- ``parts`` + ``layer_rows``: a layer's result per detector, shared by the cache and the store.
- ``cache``: the scan's per-layer cache (SQLite in the user's cache directory).
- ``results``: the crawl's results store (repositories, tags, images, verdicts, lineage).
- ``serialize``: the JSON codec derived from the model's type hints.

The package imports nothing itself: the report's JSON uses ``serialize`` without
opening SQLite, and a scan with ``--no-cache`` never loads the store.
"""
