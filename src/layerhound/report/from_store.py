"""Judgements read back from a results store, as ``ImageResult``s every report format takes.

``report --db`` renders a crawl's store in any format without judging
anything again; ``crawl`` reports what it covered the same way. An image is
named by its best tag (one still pointing at it, else the one it had), and its
reasons end with the lineage's "built on …" when it inherits the implant.
"""

from __future__ import annotations

from layerhound.lineage.graph import Lineage
from layerhound.model import Failure, ImageResult, LayerResult, Verdict
from layerhound.scan import source_of
from layerhound.store.results import ResultStore


def stored_result(store: ResultStore, digest: str, label: str, rules: str) -> ImageResult:
    """An image's judgement from the store, with its base's "built on" reason."""
    row = store.verdict(digest, rules)
    if row is None:
        return ImageResult(label, digest, None, Verdict.ERROR, ["not judged"], error="not judged",
                           failure=Failure("source", "not judged"))
    image = store.image(digest)
    reasons = list(row.reasons)
    base = None
    if row.base is not None:
        base = str(row.base.get("label"))
        reasons.append(f"built on {base}, judged {row.base.get('verdict')}")
    failure = row.failure
    return ImageResult(
        ref=label,
        digest=digest if digest.startswith("sha") else None,
        platform=image.platform if image is not None else None,
        verdict=row.verdict,
        reasons=reasons,
        findings=store.findings(digest, rules),
        layers=[LayerResult(digest=d, size=0) for d in image.layers] if image is not None else [],
        base=base,
        error=failure.message if failure is not None else None,
        failure=failure,
        source=source_of(label),
        created=image.created if image is not None else None,
    )




def stored_images(store: ResultStore, rules: str) -> list[ImageResult]:
    """Every image of the store judged at ``rules``, by repository and tag, dated by its tag."""
    lineage = Lineage.from_store(store, rules)
    judged = store.verdicts(rules)
    dates = {(row.repository, row.tag, row.digest): row.date for row in store.tags() if row.date}
    results = []
    for digest, node in sorted(lineage.nodes.items(), key=lambda item: item[1].label):
        if digest not in judged:
            continue
        label = str(node.names[0]) if node.names else node.image.first_ref
        result = stored_result(store, digest, label, rules)
        if node.names:  # the tag's date (Docker Hub's push date) over the build date, for timelines
            name = node.names[0]
            result.created = dates.get((name.repository, name.tag, name.digest)) or result.created
        results.append(result)
    return results
