"""``layerhound advise REF``: the clean tag to move to, and the clean base to rebuild on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from layerhound.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    OutputFormat,
    add_db_option,
    add_registry_options,
    positive_int,
    registry_settings,
    write_output,
)
from layerhound.errors import ReferenceError_, UsageError

if TYPE_CHECKING:
    from layerhound.crawl.executor import Executor
    from layerhound.registry.session import RegistrySession
    from layerhound.store.results import ResultStore


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    advice = commands.add_parser(
        "advise",
        help="name the newest clean tag to move to (and the clean base to rebuild a derived image on)",
        description="For REF (REPO:TAG or REPO@DIGEST), name the newest tag of the same repository, by date, "
        "whose judgement is clean; for an image built on an infected base, also the newest clean tag of the "
        "base's repository to rebuild on. Candidates the store has not judged are crawled first (newest first), "
        "unless --no-scan.",
    )
    advice.add_argument("reference", metavar="REF")
    add_db_option(advice)
    advice.add_argument("--no-scan", action="store_true", help="advise from the store only; judge nothing new")
    advice.add_argument("--jobs", type=positive_int, metavar="N", help="worker processes when judging candidates")
    advice.add_argument("--format", choices=[f.value for f in OutputFormat], default="table")
    advice.add_argument("-o", "--output", type=Path, help="write to FILE instead of stdout")
    add_registry_options(advice)
    advice.set_defaults(run=run)


class CrawlProber:
    """``lineage.advice.Prober`` by crawling: tags listed as a crawl lists them, images judged as it judges."""

    def __init__(self, store: ResultStore, session: RegistrySession, executor: Executor, reference: str) -> None:
        self.store, self.session, self.executor = store, session, executor
        self.reference = reference
        self._listed: set[str] = set()

    def list_tags(self, repository: str) -> None:
        from layerhound.crawl.run import Crawler
        from layerhound.crawl.targets import parse_target

        if repository not in self._listed:
            self._listed.add(repository)
            Crawler(self.store, self.session, self.executor).observe_tags(parse_target(f"docker://{repository}"))

    def judge(self, reference: str) -> None:
        from layerhound.crawl.run import Crawler
        from layerhound.crawl.targets import parse_target

        crawler = Crawler(self.store, self.session, self.executor)
        crawler.run([parse_target(f"docker://{reference}")], {"advise": self.reference})


def run(args: argparse.Namespace) -> int:
    from layerhound.crawl.executor import make_executor
    from layerhound.crawl.run import verdict_version
    from layerhound.lineage.advice import advise, repository_of
    from layerhound.registry.session import RegistrySession
    from layerhound.store.results import ResultStore

    try:
        repository_of(args.reference)
    except ReferenceError_ as exc:
        raise UsageError(str(exc)) from None
    ResultStore.create_sqlite_dir(args.db)
    settings = registry_settings(args)
    with ResultStore.open(args.db) as store, RegistrySession(settings) as session:
        executor = None if args.no_scan else make_executor("local", args.jobs or 1)
        prober = None if executor is None else CrawlProber(store, session, executor, args.reference)
        try:
            advice = advise(store, verdict_version(), args.reference, prober)
        finally:
            if executor is not None:
                executor.close()
    if args.format == OutputFormat.JSON.value:
        write_output(json.dumps(advice.document(), indent=2) + "\n", args.output)
    else:
        write_output("\n".join(advice.lines) + "\n", args.output)
    if advice.image is None:
        print(f"layerhound: {args.reference} could not be judged", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
