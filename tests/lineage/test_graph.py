"""The lineage graph on a store filled by hand: chains, nearest infected ancestor, moved tags, layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerhound.lineage.graph import Lineage
from layerhound.model import ImageResult, Verdict
from layerhound.store.results import ImageRow, ResultStore

RULES = "r-test"


def d(n: int) -> str:
    return f"sha256:{n:064x}"


@pytest.fixture()
def store(tmp_path: Path) -> ResultStore:
    opened = ResultStore.open(f"sqlite:///{tmp_path / 'results.sqlite3'}")
    # base (infected) ← app ← app-plus ← app-max; base ← other (clean chain beside); clean-base ← api
    images = {
        10: ((1, 2), Verdict.BACKDOORED_REACHABLE, [("r/base", "old")]),
        11: ((1, 3), Verdict.CLEAN, [("r/base", "new")]),
        20: ((1, 2, 4), Verdict.BACKDOORED_DORMANT, [("r/app", "1")]),
        21: ((1, 2, 4, 5), Verdict.BACKDOORED_DORMANT, [("r/app-plus", "1")]),
        22: ((1, 2, 4, 5, 6), Verdict.BACKDOORED_DORMANT, [("r/app-max", "1")]),
        30: ((1, 3, 7), Verdict.CLEAN, [("r/api", "1")]),
    }
    for n, (chain, verdict, names) in images.items():
        opened.put_image(ImageRow(d(n), "linux/amd64", None, None, tuple(d(c) for c in chain),
                                  tuple(d(100 + c) for c in chain), f"r/x@{d(n)}"))
        opened.put_children(d(n), [(d(n), "linux/amd64")])
        opened.put_verdict(d(n), RULES, ImageResult(f"img{n}", d(n), "linux/amd64", verdict, ["because"]))
        for repository, tag in names:
            opened.observe_tag(repository, tag, d(n), None, None)
    return opened


def test_parents_are_the_longest_proper_prefix_and_infection_is_inherited(store: ResultStore) -> None:
    lineage = Lineage.from_store(store, RULES)
    assert lineage.nodes[d(22)].parent == d(21)
    assert [n.digest for n in lineage.ancestors(d(22))] == [d(21), d(20), d(10)]
    assert lineage.nearest_infected(d(22)).digest == d(21)  # type: ignore[union-attr]
    assert lineage.nearest_infected(d(20)).digest == d(10)  # type: ignore[union-attr]
    assert lineage.nearest_infected(d(30)) is None
    assert [n.digest for n in lineage.infected_bases()] == [d(10)]
    assert [(depth, n.digest) for depth, n in lineage.descendants(d(10))] == [(1, d(20)), (2, d(21)), (3, d(22))]
    # A layer (by blob digest or diff_id): every image that carries it.
    assert {n.digest for n in lineage.with_layer(d(104))} == {d(20), d(21), d(22)}
    assert {n.digest for n in lineage.with_layer(d(3))} == {d(11), d(30)}


def test_a_tag_that_moved_still_names_its_old_digest(store: ResultStore) -> None:
    store.observe_tag("r/base", "old", d(11), None, None)  # "old" now points at the clean image
    import time

    time.sleep(1.1)  # observations are kept by the second
    store.observe_tag("r/base", "old", d(11), None, None)
    lineage = Lineage.from_store(store, RULES)
    old = lineage.nodes[d(10)]
    assert old.names[0].tag == "old" and not old.names[0].current
    assert old.label.endswith("(tag since moved)")
    assert [str(n) for n in lineage.nodes[d(11)].names] == ["r/base:new", "r/base:old"]
    assert [n.digest for n in lineage.find("r/base:old")] == [d(11)]
    assert [n.digest for n in lineage.find(f"r/base@{d(10)}")] == [d(10)]
