"""``--format html -o report.html``: one self-contained page a person can read, send and print.

No network at view time: the styles and the one small script are inline, the
pictures are SVG drawn here, and a Content-Security-Policy forbids every fetch
(the tests load the page in Chromium and check that nothing was attempted).
What it shows: counts by verdict with the rules version and the time; per
repository, a timeline of its tags by date coloured by verdict (the study's
picture: old tags still infected, new ones clean); the lineage of infected bases
and the images built on them; per image, the evidence (path, layer and its
position, rule, reasons) and the reachability chain sshd → libsystemd → liblzma
drawn as a chain; a filter by verdict, repository and text. Every string that
comes from an image (references, tags, paths, reasons) is escaped: a tag named
``<script>`` is text.
"""

from __future__ import annotations

import datetime
import html
from collections import Counter, defaultdict
from collections.abc import Sequence

from layerhound import __version__
from layerhound.model import ImageResult, Verdict
from layerhound.registry.hub import parse_timestamp

COLOR = {
    Verdict.BACKDOORED_REACHABLE: "#b00020",
    Verdict.BACKDOORED_DORMANT: "#e53935",
    Verdict.BACKDOOR_IN_HISTORY: "#fb8c00",
    Verdict.SOURCE_ARTIFACTS: "#fdd835",
    Verdict.AFFECTED_VERSION_NOT_INJECTED: "#c0ca33",
    Verdict.CLEAN: "#43a047",
    Verdict.ERROR: "#757575",
}
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.counts span{display:inline-block;margin:.2em .4em .2em 0;padding:.2em .6em;border-radius:3px;color:#fff}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.25em .4em;text-align:left;
vertical-align:top;overflow-wrap:anywhere}code{font-size:.92em;word-break:break-all}
.v{color:#fff;padding:0 .4em;border-radius:3px}
.chain{display:flex;flex-wrap:wrap;align-items:center;gap:.3em;margin:.3em 0}.chain span{border:1px solid #999;
border-radius:3px;padding:.1em .4em;background:#fafafa}.chain i{font-style:normal;color:#999}
details{margin:.3em 0 .8em}summary{cursor:pointer}.filters{position:sticky;top:0;background:#fff;padding:.4em 0}
@media print{.filters{display:none}details{page-break-inside:avoid}details:not([open]) > *:not(summary){display:block}}
"""

SCRIPT = """
document.body.dataset.errors = "";
window.addEventListener("error", e => { document.body.dataset.errors += (e.message || "error") + ";"; });
document.addEventListener("securitypolicyviolation", e => {
  document.body.dataset.blocked = (document.body.dataset.blocked || "") + e.blockedURI + ";";
});
function filter() {
  const verdict = document.getElementById("verdict").value, repo = document.getElementById("repo").value,
        text = document.getElementById("text").value.toLowerCase();
  let shown = 0;
  for (const row of document.querySelectorAll("[data-verdict]")) {
    const ok = (!verdict || row.dataset.kind === "timeline" || row.dataset.verdict === verdict) &&
               (!repo || row.dataset.repo === repo) &&
               (!text || row.textContent.toLowerCase().includes(text));
    row.style.display = ok ? "" : "none"; if (ok && row.tagName === "TR") shown++;
  }
  document.getElementById("shown").textContent = shown;
}
for (const id of ["verdict", "repo", "text"]) document.getElementById(id).addEventListener("input", filter);
filter();
// Printed, every piece of evidence shows (a closed <details> prints as its summary only).
const opened = [];
window.addEventListener("beforeprint", () => {
  for (const d of document.querySelectorAll("details:not([open])")) { d.open = true; opened.push(d); }
});
window.addEventListener("afterprint", () => { while (opened.length) opened.pop().open = false; });
document.body.dataset.ready = "1";
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _group_of(ref: str) -> str:
    """What the page groups a reference under: its ``registry/repository`` (the label before the tag or
    digest; a local reference as written)."""
    base = ref.split("@", 1)[0]
    head, sep, tail = base.rpartition(":")
    return head if sep and "/" not in tail else base


def _when(result: ImageResult) -> datetime.datetime | None:
    return parse_timestamp(result.created) if result.created else None


def _timeline(repository: str, images: Sequence[ImageResult]) -> str:
    dated = sorted(((w, r) for r in images if (w := _when(r)) is not None), key=lambda p: p[0])
    if not dated:
        return f"<p>{_e(repository)}: no dates known</p>"
    first, last = dated[0][0].timestamp(), dated[-1][0].timestamp()
    span = max(last - first, 1.0)
    width, left, right = 900, 60, 60
    marks = []
    placed: list[float] = []
    for when, result in dated:
        x = left + (when.timestamp() - first) / span * (width - left - right)
        stacked = sum(1 for other in placed if abs(other - x) < 14)  # same day: stacked, never moved in time
        placed.append(x)
        y = 28 + (stacked % 6) * 16
        name = result.ref.split("@", 1)[0]
        tag = name.rsplit(":", 1)[-1] if ":" in name.rsplit("/", 1)[-1] else name.rsplit("/", 1)[-1]
        marks.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="6" fill="{COLOR[result.verdict]}"><title>{_e(result.ref)}: '
            f'{result.verdict.value}, {when:%Y-%m-%d}</title></circle>'
            f'<text x="{x:.1f}" y="{y + 18}" font-size="10" text-anchor="middle">{_e(tag[:20])}</text>'
        )
    axis = (f'<line x1="{left}" y1="14" x2="{width - right}" y2="14" stroke="#999"/>'
            f'<text x="{left}" y="10" font-size="10">{dated[0][0]:%Y-%m-%d}</text>'
            f'<text x="{width - right}" y="10" font-size="10" text-anchor="end">{dated[-1][0]:%Y-%m-%d}</text>')
    height = 60 + 16 * min(5, max((sum(1 for o in placed if abs(o - x) < 14) for x in placed), default=1))
    return (f'<div data-kind="timeline" data-repo="{_e(repository)}" class="timeline"><h3>{_e(repository)}</h3>'
            f'<svg role="img" aria-label="tags of {_e(repository)} by date" width="100%" '
            f'viewBox="0 0 {width} {height}">{axis}{"".join(marks)}</svg></div>')


def _lineage(results: Sequence[ImageResult]) -> str:
    by_digest = {r.digest: r for r in results if r.digest}
    children: dict[str, list[ImageResult]] = defaultdict(list)
    for result in results:
        if result.base:
            base_digest = result.base.split("@", 1)[1].split(" ", 1)[0] if "@" in result.base else ""
            children[base_digest].append(result)
    roots = [by_digest[d] for d in children if d in by_digest and not by_digest[d].base]
    # A base that is not among these images (a report of one repository) still roots its tree.
    for base_digest, kids in children.items():
        if base_digest not in by_digest and kids and kids[0].base:
            placeholder = ImageResult(kids[0].base.split("@", 1)[0] + " (not in this report)", base_digest, None,
                                      Verdict.BACKDOORED_DORMANT)
            by_digest[base_digest] = placeholder
            roots.append(placeholder)
    if not roots:
        return "<p>No image here is built on an infected image (lineage comes from a crawl's store).</p>"
    rows: list[tuple[int, ImageResult]] = []

    def walk(node: ImageResult, depth: int) -> None:
        rows.append((depth, node))
        for child in sorted(children.get(node.digest or "", []), key=lambda r: r.ref):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda r: r.ref):
        walk(root, 0)
    height = 22 * len(rows) + 10
    parts: list[str] = []
    last_at_depth: dict[int, tuple[int, int]] = {}
    for index, (depth, node) in enumerate(rows):
        x, y = 10 + depth * 28, 18 + index * 22
        if depth:
            px, py = last_at_depth[depth - 1]
            parts.append(f'<path d="M{px + 5} {py + 5} V{y - 4} H{x - 2}" fill="none" stroke="#999"/>')
        last_at_depth[depth] = (x, y)
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{COLOR[node.verdict]}"/>'
                     f'<text x="{x + 16}" y="{y}" font-size="12">{_e(node.ref)} ({node.verdict.value})</text>')
    return (f'<svg role="img" aria-label="lineage of infected bases" class="lineage" width="100%" '
            f'viewBox="0 0 1000 {height}">{"".join(parts)}</svg>')


def _chain(result: ImageResult) -> str:
    for reason in result.reasons:
        if reason.startswith("sshd would load the implant") and "→" in reason:
            steps = [step.strip() for step in reason.split(":", 1)[1].split("→")]
            links = "<i>→</i>".join(f"<span>{_e(step)}</span>" for step in steps)
            return f'<div class="chain" title="what sshd loads at start-up">{links}</div>'
    return ""


def _evidence(result: ImageResult, positions: dict[str, int]) -> str:
    reasons = "".join(f"<li>{_e(r)}</li>" for r in result.reasons)
    findings = "".join(
        f"<tr><td><code>{_e(f.path)}</code></td><td><code>{_e((f.layer or '-')[:19])}</code> "
        f"(#{positions.get(f.layer or '', '?')})</td><td>{_e(f.rule)}</td><td>{f.kind.value}</td>"
        f"<td>{'final' if f.in_final_fs else 'lower layer'}</td></tr>"
        for f in result.findings
    )
    table = (f"<table><tr><th>path</th><th>layer (position)</th><th>rule</th><th>kind</th><th>where</th></tr>"
             f"{findings}</table>") if findings else ""
    return (f'<details data-verdict="{result.verdict.value}" data-repo="{_e(_group_of(result.ref))}">'
            f'<summary><span class="v" style="background:{COLOR[result.verdict]}">{result.verdict.value}</span> '
            f"{_e(result.ref)}</summary>{_chain(result)}<ul>{reasons}</ul>{table}</details>")


def render_html(results: Sequence[ImageResult], rules_version: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts = Counter(r.verdict for r in results)
    repositories: dict[str, list[ImageResult]] = defaultdict(list)
    for result in results:
        repositories[_group_of(result.ref)].append(result)
    count_html = "".join(f'<span style="background:{COLOR[v]}">{v.value}: {counts[v]}</span>'
                         for v in Verdict if counts[v])
    options = "".join(f'<option value="{v.value}">{v.value}</option>' for v in Verdict if counts[v])
    repo_options = "".join(f'<option value="{_e(r)}">{_e(r)}</option>' for r in sorted(repositories))
    rows = "".join(
        f'<tr data-verdict="{r.verdict.value}" data-repo="{_e(_group_of(r.ref))}"><td>{_e(r.ref)}</td>'
        f"<td>{_e(r.platform or '-')}</td><td><span class=\"v\" style=\"background:{COLOR[r.verdict]}\">"
        f"{r.verdict.value}</span></td><td>{_e((r.created or '')[:10])}</td><td>{_e(r.base or '')}</td></tr>"
        for r in results
    )
    timelines = "".join(_timeline(repo, images) for repo, images in sorted(repositories.items()))
    evidence = "".join(
        _evidence(r, {layer.digest or "": i for i, layer in enumerate(r.layers)})
        for r in results if r.verdict is not Verdict.CLEAN
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>layerhound report: CVE-2024-3094</title><style>{STYLE}</style></head>
<body>
<h1>layerhound: CVE-2024-3094 (XZ Utils backdoor)</h1>
<p>{len(results)} image(s), {len(repositories)} repositories · layerhound {_e(__version__)} · rules
<code>{_e(rules_version)}</code> · {now}</p>
<div class="counts">{count_html}</div>
<div class="filters">verdict <select id="verdict"><option value="">all</option>{options}</select>
repository <select id="repo"><option value="">all</option>{repo_options}</select>
search <input id="text" type="search" placeholder="tag, path, rule…"> ·
<span id="shown">{len(results)}</span> shown</div>
<h2>Images</h2>
<table id="images"><tr><th>image</th><th>platform</th><th>verdict</th><th>date</th><th>built on</th></tr>{rows}</table>
<h2>Timeline of tags, per repository</h2>{timelines}
<h2>Lineage: infected bases and what is built on them</h2>{_lineage(results)}
<h2>Evidence</h2>{evidence or "<p>Nothing but clean images.</p>"}
<script>{SCRIPT}</script>
</body></html>
"""
