"""``layerhound crawl`` over a real registry: verdicts, layers once, lineage, advice, moved tags.

The registry is Debian's docker-registry (``tests/crawl/conftest.py``), reached
through a counting proxy; the store is SQLite here (PostgreSQL, Dask and
kill -9 have their own modules).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from layerhound.cli import main
from layerhound.crawl.run import verdict_version
from layerhound.lineage.graph import Lineage
from layerhound.report.json_report import load_schema
from layerhound.report.sarif import load_sarif_schema
from layerhound.report.vex import load_openvex_schema
from layerhound.store.results import ResultStore
from tests.crawl.conftest import repos, sqlite_url
from tests.support.browser import dump_dom
from tests.support.registry import Fault, FaultProxy, RegistryServer
from tests.support.world import CLEAN, World


def crawl(
    capsys: pytest.CaptureFixture[str], proxy: FaultProxy, db: str, *args: str
) -> tuple[int, dict[str, Any], str]:
    status = main(["crawl", "--insecure-registry", proxy.host, "--db", db, "--jobs", "2", "--format", "json",
                   "--no-progress", *args])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    jsonschema.validate(report, load_schema())
    return status, report, captured.err


def by_ref(report: dict[str, Any], proxy: FaultProxy) -> dict[str, dict[str, Any]]:
    prefix = f"{proxy.host}/"
    return {image["ref"].removeprefix(prefix): image for image in report["images"]}


def blob_downloads(proxy: FaultProxy) -> Counter[str]:
    counts: Counter[str] = Counter()
    for seen in proxy.matching("GET", "/blobs/"):
        match = re.search(r"/blobs/(sha256:[0-9a-f]{64})", seen.path)
        if match and seen.status in (200, 206):
            counts[match.group(1)] += 1
    return counts


def test_crawl_judges_every_tag_once_with_lineage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    status, report, err = crawl(capsys, counting, db, *repos(counting, world))
    assert status == 1, err  # backdoored images found
    images = by_ref(report, counting)
    assert set(images) == set(world.images), set(images) ^ set(world.images)
    assert len(images) >= 55
    wrong = {name: (images[name]["verdict"], p.verdict) for name, p in world.images.items()
             if images[name]["verdict"] != p.verdict}
    assert not wrong
    # Secondary images name the nearest infected image they are built on, and say so.
    for name, planned in world.images.items():
        image = images[name]
        if planned.base is None:
            assert image["base"] is None, name
            continue
        assert image["base"] is not None and image["base"].startswith(f"{counting.host}/{planned.base}@"), (name, image)
        assert any(r.startswith(f"built on {counting.host}/{planned.base}@") for r in image["reasons"]), name

    # Each layer blob was downloaded once, however many images share it (the Debian root: all 57).
    downloads = blob_downloads(counting)
    layer_digests = {d for p in world.images.values() if p.written for d in p.written.layer_digests}
    assert {d: n for d, n in downloads.items() if d in layer_digests and n != 1} == {}
    assert layer_digests <= set(downloads)
    assert downloads[world.shared_layers["debian root"]] == 1
    sharing = sum(world.shared_layers["debian root"] in p.written.layer_digests for p in world.images.values()
                  if p.written)
    assert sharing == len(world.images)

    # A second crawl finds everything judged: no manifest and no blob is fetched again.
    counting.reset()
    status2, report2, err2 = crawl(capsys, counting, db, *repos(counting, world))
    assert status2 == 1
    assert [i["verdict"] for i in report2["images"]] == [i["verdict"] for i in report["images"]]
    assert counting.count("GET", "/blobs/") == 0 and counting.count("GET", "/manifests/") == 0
    assert f"{len(world.images)} already judged" in err2

    with ResultStore.open(db) as store:
        runs = store.runs()
        assert [r[5] for r in runs] == ["finished", "finished"]
        assert runs[1][6]["images_skipped"] == len(world.images) and runs[1][6]["layers_walked"] == 0


def test_lineage_command_draws_the_tree_and_the_infected_bases(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    crawl(capsys, counting, db, *repos(counting, world))
    host = counting.host

    assert main(["lineage", "--db", db, f"{host}/team/worker:w3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"built on: {host}/team/web:v3@")  # ancestry, nearest first
    assert f"← {host}/library/debian:bookworm-20240301@" in out.splitlines()[0]
    assert re.search(rf"^└── {re.escape(host)}/team/cron:c3@\S+ \[backdoored-dormant\]$", out, re.M)

    assert main(["lineage", "--db", db, "--infected"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 infected base image(s)\n")
    assert f"{host}/library/debian:bookworm-20240301@" in out.splitlines()[1]
    # Every infected image is somewhere below it, three levels deep for cron.
    for name, planned in world.images.items():
        if planned.verdict != CLEAN and name != "library/debian:bookworm-20240301":
            assert f"{host}/{name}@" in out, name
    assert re.search(r"^│       └── \S+/team/cron:c1@\S+ \[backdoored-dormant\]$", out, re.M)
    assert f"{host}/team/api:" not in out  # clean images are not under an infected base

    # A layer: the images that introduced it and everything built on them.
    implant = world.shared_layers["implant"]
    assert main(["lineage", "--db", db, "--format", "json", implant]) == 0
    document = json.loads(capsys.readouterr().out)
    [root] = document["roots"]
    assert root["names"][0]["tag"] == "bookworm-20240301" and root["verdict"] == "backdoored-reachable"

    assert main(["lineage", "--db", db, "no/such:tag"]) == 2
    assert "not in the store" in capsys.readouterr().err

    # The same store in the report formats, judged nothing again.
    assert main(["report", "--db", db, "--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    jsonschema.Draft4Validator(load_sarif_schema()).validate(sarif)
    results = sarif["runs"][0]["results"]
    worker = [r for r in results if r["properties"]["image"] == f"{host}/team/worker:w3"]
    assert worker and all(r["properties"]["base"].startswith(f"{host}/team/web:v3@") for r in worker)
    assert {r["properties"]["verdict"] for r in worker} == {"backdoored-dormant"}
    assert len(sarif["runs"][0]["properties"]["images"]) == len(world.images)
    assert main(["report", "--db", db, "--format", "markdown"]) == 1
    markdown = capsys.readouterr().out
    assert f"{len(world.images)} image(s)" in markdown and "| 🟢 clean |" in markdown
    assert main(["report", "--db", db, "--format", "json", "--repository", f"{host}/team/api"]) == 0
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, load_schema())
    assert {i["verdict"] for i in document["images"]} == {"clean"} and len(document["images"]) == 15
    page = tmp_path / "report.html"
    assert main(["report", "--db", db, "--format", "html", "-o", str(page)]) == 1
    dom = dump_dom(page)
    assert 'data-ready="1"' in dom and 'data-errors=""' in dom and "data-blocked" not in dom
    lineage = dom.split('class="lineage"', 1)[1].split("</svg>", 1)[0]
    assert f"{host}/library/debian:bookworm-20240301 (backdoored-reachable)" in lineage
    assert f"{host}/team/cron:c3 (backdoored-dormant)" in lineage and "team/api" not in lineage
    assert dom.count('class="timeline"') == len(world.repositories)


def test_advise_names_the_newest_clean_tag_and_the_base_to_rebuild_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    crawl(capsys, counting, db, *repos(counting, world))
    host = counting.host
    assert main(["advise", "--db", db, "--format", "json", "--no-scan", f"docker://{host}/team/web:v3"]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["verdict"] == "backdoored-dormant"
    assert advice["move_to"]["tag"] == "v20" and advice["move_to"]["verdict"] == "clean"
    assert advice["base"]["repository"] == f"{host}/library/debian" and advice["base"]["tag"] == "bookworm-20240301"
    assert advice["rebuild_on"]["tag"] == "bookworm-20240415" and advice["rebuild_on"]["verdict"] == "clean"
    text = "\n".join(advice["advice"])
    assert "move to" in text and "rebuild it on" in text and "2024-04-15" in text

    # A clean image: nothing to fix.
    assert main(["advise", "--db", db, "--no-scan", f"docker://{host}/team/api:a2"]) == 0
    assert "nothing to fix" in capsys.readouterr().out

    # The VEX of the store carries the advice as the action, and the inherited image names its base.
    assert main(["report", "--db", db, "--format", "openvex"]) == 1
    vex = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator(load_openvex_schema()).validate(vex)
    [web3] = [s for s in vex["statements"] if s["products"][0]["identifiers"]["purl"].endswith("tag=v3")
              and "team/web" in s["products"][0]["identifiers"]["purl"]]
    assert web3["status"] == "affected" and "move to" in web3["action_statement"]
    assert "rebuild it on" in web3["action_statement"] and "bookworm-20240415" in web3["action_statement"]
    assert main(["report", "--db", db, "--format", "cyclonedx"]) == 1
    bom = json.loads(capsys.readouterr().out)
    worker = next(c for c in bom["components"] if c["name"] == f"{host}/team/worker:w2")
    properties = {p["name"]: p["value"] for p in worker["properties"]}
    assert properties["layerhound:base"].startswith(f"{host}/team/web:v2@")


def test_advise_judges_what_the_store_lacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    """An empty store: advise crawls the image, then the repository's tags, newest first."""
    db = sqlite_url(tmp_path / "empty.sqlite3")
    status = main(["advise", "--db", db, "--insecure-registry", counting.host, "--format", "json",
                   f"docker://{counting.host}/team/web:v2"])
    advice = json.loads(capsys.readouterr().out)
    assert status == 0
    assert advice["verdict"] == "backdoored-dormant" and advice["move_to"]["tag"] == "v20"
    with ResultStore.open(db) as store:
        judged = store.verdicts(verdict_version())
        assert len(store.tags(f"{counting.host}/team/web")) == 20  # every tag was listed...
    assert len(judged) == 2  # ...but only v2 and the newest tag, clean, were pulled and judged
    assert advice["base"] is None  # no base image is in the store yet: nothing to name
    # Once the bases are crawled, the same advice names the base and the clean one to rebuild on.
    assert main(["crawl", "--insecure-registry", counting.host, "--db", db, "--no-progress", "--jobs", "1",
                 f"docker://{counting.host}/library/debian"]) == 1
    capsys.readouterr()
    assert main(["advise", "--db", db, "--no-scan", "--format", "json", f"docker://{counting.host}/team/web:v2"]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["base"]["tag"] == "bookworm-20240301" and advice["rebuild_on"]["tag"] == "bookworm-20240415"


def test_a_moved_tag_keeps_every_digest_it_pointed_to(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy,
    world_registry: RegistryServer,
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    debian = f"docker://{counting.host}/library/debian"
    crawl(capsys, counting, db, debian)
    old_sid = world.images["library/debian:sid"]
    assert old_sid.written is not None and world.sid_clean is not None and world.sid_clean.written is not None
    registry = world_registry
    world.move_sid(registry)
    try:
        _, report, _ = crawl(capsys, counting, db, debian)
        assert by_ref(report, counting)["library/debian:sid"]["verdict"] == CLEAN
        with ResultStore.open(db) as store:
            sid = [row.digest for row in store.tags(f"{counting.host}/library/debian") if row.tag == "sid"]
            assert sorted(sid) == sorted([old_sid.written.manifest_digest, world.sid_clean.written.manifest_digest])
            lineage = Lineage.from_store(store, verdict_version())
            old = lineage.nodes[old_sid.written.manifest_digest or ""]
            assert old.infected and old.label.endswith("(tag since moved)")
        # The old digest is still infected and the advice is to take the tag as it is now.
        assert main(["advise", "--db", db, "--no-scan", "--format", "json",
                     f"{counting.host}/library/debian@{old_sid.written.manifest_digest}"]) == 0
        advice = json.loads(capsys.readouterr().out)
        assert advice["verdict"] == "backdoored-reachable"
        assert advice["move_to"]["tag"] == "sid"
        assert advice["move_to"]["digest"] == world.sid_clean.written.manifest_digest
    finally:
        world.push_tag(registry, "library/debian:sid")  # back to the infected one for the other tests


def test_pull_budget_stops_the_crawl_cleanly_and_it_resumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    db = sqlite_url(tmp_path / "results.sqlite3")
    api, web = f"docker://{counting.host}/team/api", f"docker://{counting.host}/team/web"
    # team/api's 15 manifests (fetched once each: for its listing's dates, kept for judging) and three of
    # team/web's go through; from then on the registry reports its pull budget at the reserve (5 left).
    counting.add(Fault("headers", r"/manifests/sha256:", times=-1, after=15 + 3,
                       headers={"ratelimit-remaining": "5;w=21600"}))
    status, report, err = crawl(capsys, counting, db, api, web)
    assert status == 2
    assert "pull rate limit nearly used up" in err and "continues where it stopped" in err
    judged_first = [i for i in report["images"] if i["verdict"] != "error"]
    assert len(judged_first) == 15 and all("/team/api:" in i["ref"] for i in judged_first)
    assert counting.count("GET", "/manifests/") == 15 + 4  # the fourth of web's answered "5 left": no more
    counting.reset()
    status, report, err = crawl(capsys, counting, db, api, web)
    assert status == 1
    assert len(report["images"]) == 35 and all(i["verdict"] != "error" for i in report["images"])
    assert "15 already judged" in err


def test_from_file_with_kubectl_pods_names_the_workloads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    host = counting.host
    pods = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"kind": "Pod", "metadata": {"namespace": "shop", "name": "web-5d9f"},
             "spec": {"initContainers": [{"name": "init", "image": f"{host}/team/api:a1"}],
                      "containers": [{"name": "web", "image": f"{host}/team/web:v4"}]}},
            {"kind": "Pod", "metadata": {"namespace": "ops", "name": "cron-1"},
             "spec": {"containers": [{"name": "cron", "image": f"{host}/team/cron:c2"}]}},
        ],
    }
    listing = tmp_path / "pods.json"
    listing.write_text(json.dumps(pods))
    db = sqlite_url(tmp_path / "results.sqlite3")
    status = main(["crawl", "--insecure-registry", host, "--db", db, "--jobs", "2", "--no-progress",
                   "--from", str(listing)])
    out = capsys.readouterr().out
    assert status == 1
    assert f"shop/web-5d9f web: {host}/team/web:v4 → backdoored-dormant !" in out
    assert f"shop/web-5d9f init: {host}/team/api:a1 → clean" in out
    assert f"ops/cron-1 cron: {host}/team/cron:c2 → backdoored-dormant !" in out
    with ResultStore.open(db) as store:
        assert [w[:3] for w in store.workloads()] == [
            ("ops", "cron-1", "cron"), ("shop", "web-5d9f", "init"), ("shop", "web-5d9f", "web"),
        ]
        web = world.images["team/web:v4"].written
        assert web is not None and store.workloads()[2][4] == web.manifest_digest  # the digest it runs
        assert len(store.verdicts(verdict_version())) == 3  # only those images, not their repositories
    # Two pods on the same image, by two names: both are named (the image is judged once).
    pods["items"].append({"kind": "Pod", "metadata": {"namespace": "shop", "name": "web-6e0a"},
                          "spec": {"containers": [{"name": "web", "image": f"{host}/team/web@{web.manifest_digest}"}]}})
    listing.write_text(json.dumps(pods))
    status = main(["crawl", "--insecure-registry", host, "--db", db, "--no-progress", "--format", "json",
                   "--from", str(listing)])
    document = json.loads(capsys.readouterr().out)
    assert status == 1
    named = {(w["namespace"], w["pod"], w["container"]): w["verdict"] for w in document["workloads"]}
    assert named[("shop", "web-6e0a", "web")] == named[("shop", "web-5d9f", "web")] == "backdoored-dormant"
    assert len(named) == 4

    lines = tmp_path / "repos.txt"
    lines.write_text(f"# a comment\n{host}/team/api:a3\n\ndocker://{host}/team/api:a4  # trailing\n")
    assert main(["crawl", "--insecure-registry", host, "--db", db, "--no-progress", "--from", str(lines)]) == 0
    assert main(["crawl", "--db", db, "--from", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_users_rules_run_in_the_crawls_worker_processes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, world: World, counting: FaultProxy
) -> None:
    """``--rules`` travels with each layer task to the process pool: every implant image gets the
    rule's finding, no clean one does, and the stored verdicts are keyed by the rules too."""
    rules = tmp_path / "team.yar"
    rules.write_text('rule sim_probe { strings: $a = "lh_sim_probe" condition: $a }\n')
    infected = next(p for p in world.images.values() if p.verdict not in CLEAN)
    clean = next(p for p in world.images.values() if p.verdict in CLEAN and p.repository != infected.repository)
    targets = [f"docker://{counting.host}/{p.repository}:{p.tag}" for p in (infected, clean)]
    db = sqlite_url(tmp_path / "results.sqlite3")
    status, report, err = crawl(capsys, counting, db, "--rules", str(rules), *targets)
    assert status == 1, err
    images = by_ref(report, counting)
    rules_of = {name: {f["rule"] for f in image["findings"]} for name, image in images.items()}
    assert "yara:team.sim_probe" in rules_of[f"{infected.repository}:{infected.tag}"]
    assert not any(r.startswith("yara:") for r in rules_of[f"{clean.repository}:{clean.tag}"])
    # Without the rules the same images are judged again (another rules version), not served as they were.
    status, report, err = crawl(capsys, counting, db, *targets)
    assert all(not f["rule"].startswith("yara:") for image in report["images"] for f in image["findings"])
