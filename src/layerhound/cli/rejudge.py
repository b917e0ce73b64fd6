"""``layerhound rejudge``: judge every stored image again under the current detectors and rules, offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from layerhound.cli.common import (
    EXIT_ERROR,
    EXIT_FOUND,
    EXIT_OK,
    add_db_option,
    add_fail_on,
    add_keep_options,
    add_rules_options,
    keep_dir,
    with_user_rules,
    write_output,
)

SCHEMA = "layerhound.rejudge/v1"


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rejudge = commands.add_parser(
        "rejudge",
        help="judge every stored image again with the current detectors and --rules, without any registry",
        description="For every image in the results store without a verdict at the current rules version, run "
        "the detectors whose stored results are missing (a new detector version, the user's --rules) over the "
        "files the crawl kept of its layers, assess it again and store the verdict. No registry is contacted. "
        "Lists the images whose verdict changed (old -> new, why) and those that could not be re-judged "
        "(their files were not kept, or the walk itself changed: crawl those again).",
    )
    add_db_option(rejudge)
    add_rules_options(rejudge)
    add_keep_options(rejudge)
    rejudge.add_argument("--format", choices=["table", "json"], default="table",
                         help="table (default) or json (layerhound.rejudge/v1)")
    rejudge.add_argument("-o", "--output", type=Path, help="write the list to FILE instead of stdout")
    add_fail_on(rejudge)
    rejudge.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerhound.crawl.rejudge import Rejudger
    from layerhound.detectors.registry import ALL_DETECTORS
    from layerhound.store.results import ResultStore

    detectors = with_user_rules(ALL_DETECTORS, args)
    with ResultStore.open(args.db) as store:
        summary = Rejudger(store, detectors, keep_dir(args)).run()
    print(
        f"layerhound: rejudge {summary.run}: {summary.images} stored images, {summary.current} already judged at "
        f"these rules, {summary.rejudged} re-judged ({summary.layers_rejudged} layers from kept files), "
        f"{len(summary.changed)} verdicts changed, {len(summary.left)} could not be re-judged",
        file=sys.stderr,
    )
    if args.format == "json":
        document = {
            "schema": SCHEMA,
            "rules": summary.rules,
            "counts": {"images": summary.images, "current": summary.current, "rejudged": summary.rejudged,
                       "layers_rejudged": summary.layers_rejudged},
            "changed": [{"image": c.image, "ref": c.label, "old": c.old.value if c.old else None,
                         "new": c.new.value, "why": c.why} for c in summary.changed],
            "not_rejudged": [{"image": image, "ref": label, "why": why} for image, label, why in summary.left],
        }
        text = json.dumps(document, indent=2) + "\n"
    else:
        lines = [f"{c.label} ({c.image[:19]}): {c.old.value if c.old else 'none'} -> {c.new.value}: {c.why}"
                 for c in summary.changed]
        if not lines:
            lines = ["no verdict changed"]
        lines += [f"not re-judged: {label} ({image[:19]}): {why}" for image, label, why in summary.left]
        text = "\n".join(lines) + "\n"
    write_output(text, args.output)
    if summary.left:
        return EXIT_ERROR
    fail_on = args.fail_on
    if fail_on is not None and any(c.new.rank >= fail_on.rank for c in summary.changed):
        return EXIT_FOUND
    return EXIT_OK
