"""`make demo`: build a few container images, push them to a local registry, scan them with layerhound.

Why this exists: the README's first command should show the main job working
for real on a fresh Debian bookworm machine, without Docker or an outside
registry. The images are made from this machine's real Debian packages
(liblzma5, libsystemd0, openssh-server, fetched with ``apt-get download``) plus
the project's own *inert* test implant (tests/samples/implant_sim.c: it only
carries the published byte patterns and hooks nothing; no real backdoor code is
used). They are pushed with skopeo to Debian's docker-registry, started on a
free 127.0.0.1 port for the run and always stopped, and scanned from there (and
from a docker-archive) with the real CLI, twice with one cache; each verdict is
compared with the expected one, so the demo is also a smoke test. Then it
pushes a small history of a base repository (an infected tag, a newer clean one)
and an application built on it, crawls those repositories into a results store,
prints the lineage of the infected base and the advice for the app, and re-judges
the stored images offline with a team's YARA rule (``rejudge``). Last, it
loads one image into a private podman and scans it through the engine's API.

    python demo/demo.py [--out DIR]      # default: ./out/demo under the repo root
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.compile import IMPLANT_SIM, compile_shared  # noqa: E402
from tests.support.debian import apt_download, deb_control, deb_data_files  # noqa: E402
from tests.support.imagewriter import (  # noqa: E402
    ImageSpec,
    Layer,
    Spec,
    directory,
    file,
    symlink,
    whiteout,
    write_docker_archive,
    write_oci,
)
from tests.support.podman import Podman  # noqa: E402
from tests.support.registry import RegistryServer, push  # noqa: E402

PACKAGES = ("liblzma5", "libsystemd0", "openssh-server")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
STATUS = "/var/lib/dpkg/status"
BACKDOORED_VERSION = "5.6.1-1"
SSHD = ["/usr/sbin/sshd", "-D"]
MARKER = ".layerhound-demo"
REPOSITORY = "demo/xz"  # one tag per image
EXPECTED = {
    "clean": "clean",
    "backdoored-sshd": "backdoored-reachable",
    "quiet-copy": "backdoored-dormant",
    "cleaned-up": "backdoor-in-history",
    "version-only": "affected-version-not-injected",
}


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


class DemoRegistry(RegistryServer):
    """The tests' anonymous plain-HTTP registry, with its access log on: it tells how many blobs a scan fetched."""

    def _config(self) -> str:
        return super()._config().replace("  accesslog:\n    disabled: true", "  accesslog:\n    disabled: false")

    def blob_downloads(self) -> int:
        return len(re.findall(r'"GET /v2/\S+/blobs/sha256:[0-9a-f]+ HTTP/[0-9.]+" 20[06] ', self.log.read_text()))


def usr_merged(path: str) -> str:
    """Where dpkg puts a file on merged-/usr bookworm (/lib is a symlink to usr/lib)."""
    for top in ("/lib/", "/bin/", "/sbin/"):
        if path.startswith(top):
            return "/usr" + path
    return path


def status_file(controls: dict[str, str], liblzma_version: str | None = None) -> str:
    """A dpkg status file from the packages' real control stanzas, all installed."""
    stanzas = []
    for package, control in controls.items():
        lines = control.strip().splitlines()
        lines.insert(1, "Status: install ok installed")
        if package == "liblzma5" and liblzma_version is not None:
            lines = [f"Version: {liblzma_version}" if ln.startswith("Version:") else ln for ln in lines]
        stanzas.append("\n".join(lines))
    return "\n\n".join(stanzas) + "\n"


def base_layer(files: dict[str, Spec], status: str) -> Layer:
    """The packages' files plus the merged-/usr symlinks and the dpkg status, parents first."""
    entries: dict[str, Spec] = {"/bin": symlink("usr/bin"), "/lib": symlink("usr/lib"), "/sbin": symlink("usr/sbin")}
    wanted = {**files, STATUS: file(status)}
    parents = {str(p) for path in wanted for p in Path(path).parents if str(p) != "/"}
    entries.update({d: directory() for d in sorted(parents)})
    entries.update(sorted(wanted.items()))
    return Layer.files(entries)


def build_images(out: Path) -> tuple[Path, Path]:
    step("fetching Debian packages (apt-get download: " + ", ".join(PACKAGES) + ")…")
    files: dict[str, Spec] = {}
    controls: dict[str, str] = {}
    for package in PACKAGES:
        deb = apt_download(package)
        print(f"    {deb.name}")
        controls[package] = deb_control(deb)
        for path, (kind, value) in deb_data_files(deb).items():
            if path.startswith(("/usr/share/doc/", "/usr/share/man/")):
                continue
            if kind == "symlink":
                files[usr_merged(path)] = symlink(str(value))
            else:  # dpkg-deb's tar modes are not kept: ELF files and scripts are executable
                data = value.encode() if isinstance(value, str) else value
                files[usr_merged(path)] = file(data, 0o755 if data[:4] == b"\x7fELF" or data[:2] == b"#!" else 0o644)
    clean_lib = files[f"{LIBDIR}/liblzma.so.5"].target
    print(f"    Debian's liblzma.so.5 -> {clean_lib}")

    step("compiling the project's test implant (tests/samples/implant_sim.c, inert)…")
    with tempfile.TemporaryDirectory(prefix="layerhound-demo-") as tmp:
        implant = compile_shared(IMPLANT_SIM, Path(tmp), defines=("WITH_PROLOGUE", "WITH_YARA")).read_bytes()

    base = base_layer(files, status_file(controls))
    affected_base = base_layer(files, status_file(controls, BACKDOORED_VERSION))
    implant_files = {
        f"{LIBDIR}/liblzma.so.5.6.1": file(implant, 0o755),
        f"{LIBDIR}/liblzma.so.5": symlink("liblzma.so.5.6.1"),
    }
    upgraded = Layer.files({**implant_files, STATUS: file(status_file(controls, BACKDOORED_VERSION))})
    copied = Layer.files(implant_files)
    cleanup = Layer.files({
        f"{LIBDIR}/liblzma.so.5.6.1": whiteout(),
        f"{LIBDIR}/liblzma.so.5": symlink(clean_lib),
        STATUS: file(status_file(controls)),
    })
    sshd_image = ImageSpec([base, upgraded], cmd=SSHD, exposed_ports=["22/tcp"])
    images = {
        "clean": ImageSpec([base], cmd=SSHD, exposed_ports=["22/tcp"]),
        "backdoored-sshd": sshd_image,
        "quiet-copy": ImageSpec([base, copied], cmd=["/bin/sh"]),
        "cleaned-up": ImageSpec([base, upgraded, cleanup], cmd=SSHD, exposed_ports=["22/tcp"]),
        "version-only": ImageSpec([affected_base], cmd=SSHD, exposed_ports=["22/tcp"]),
    }

    layout = out / "layout"
    step(f"writing OCI layout {shown(layout)} (gzip layers, one tag per image)…")
    for tag, spec in images.items():
        written = write_oci(layout, spec, tag=tag)
        print(f"    {tag:16} {written.manifest_digest}  {len(written.layers)} layer(s)")
    motd = Layer.files({"/etc/motd": "rebuilt 2024-04-10\n"})
    apps = [Layer.files({"/opt/app/run.sh": file(f"#!/bin/sh\necho app {n}\n", 0o755)}) for n in range(3)]
    chains = {
        "base-infected": [base, upgraded],
        "base-clean": [base, motd],
        "app-on-infected-1": [base, upgraded, apps[0]],
        "app-on-infected-2": [base, upgraded, apps[1]],
        "app-on-clean": [base, motd, apps[2]],
    }
    step("writing a base repository's history and an app built on it (for the crawl)…")
    for name, (image, created) in HISTORY.items():
        spec = ImageSpec(chains[image], cmd=SSHD, exposed_ports=["22/tcp"], created=created)
        written = write_oci(layout, spec, tag=history_tag(name))
        print(f"    {name:22} {written.manifest_digest}  {len(written.layers)} layer(s), created {created[:10]}")
    archive = out / "backdoored-sshd.docker.tar"
    step(f"writing docker-archive {archive.name} (legacy `docker save` layout)…")
    write_docker_archive(archive, [(sshd_image, ["backdoored-sshd:demo"])], layout="legacy")
    return layout, archive


def prepare(out: Path) -> None:
    """Replace a previous demo output; never delete a directory the demo did not make."""
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            sys.exit(f"demo: {out} exists and is not a previous demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by demo/demo.py; safe to delete\n")


def expected_for(ref: str, refs: dict[str, str]) -> str | None:
    for given, verdict in refs.items():
        if ref == given or ref.startswith(given + ":"):
            return verdict
    return None


def push_and_list(layout: Path, registry: DemoRegistry) -> None:
    step(f"pushing the images with skopeo to docker://{registry.host}/{REPOSITORY} (one tag per image)…")
    for tag in EXPECTED:
        push(f"oci:{layout}:{tag}", registry, REPOSITORY, tag)
        print(f"    {REPOSITORY}:{tag}")
    tags = [sys.executable, "-m", "layerhound", "tags"]  # shown only when this CLI has the command
    probe = subprocess.run([*tags, "--help"], cwd=REPO, capture_output=True, text=True)
    if probe.returncode == 0:
        insecure = ["--insecure-registry", registry.host] if "--insecure-registry" in probe.stdout else []
        step(f"listing them with the real CLI: layerhound tags docker://{registry.host}/{REPOSITORY}")
        subprocess.run([*tags, *insecure, f"docker://{registry.host}/{REPOSITORY}"], cwd=REPO)


def crawl_history(layout: Path, registry: DemoRegistry, out: Path) -> list[str]:
    """Push the base/app history, crawl it into a results store, print lineage and advice; returns problems."""
    step("pushing a base repository's history (demo/base) and an app built on it (demo/app)…")
    for name in HISTORY:
        repository, tag = name.split(":")
        push(f"oci:{layout}:{history_tag(name)}", registry, repository, tag)
        print(f"    {name}")
    host, db = registry.host, f"sqlite:///{out / 'results.sqlite3'}"
    cli = [sys.executable, "-m", "layerhound"]
    repos = [f"docker://{host}/{r}" for r in ("demo/base", "demo/app", REPOSITORY)]
    step("crawling every tag of the three repositories into a results store: layerhound crawl --db "
         f"{db.replace(str(REPO) + '/', '')} " + " ".join(r.replace(f"docker://{host}/", "") for r in repos))
    blobs = registry.blob_downloads()
    crawled = subprocess.run([*cli, "crawl", "--insecure-registry", host, "--db", db, "--no-progress", "--format",
                              "json", "-o", str(out / "crawl.json"), *repos], cwd=REPO)
    fetched = registry.blob_downloads() - blobs
    problems = [] if crawled.returncode == 1 else [f"  crawl exited {crawled.returncode} (expected 1: infected found)"]
    verdicts = {i["ref"].removeprefix(f"{host}/"): i for i in json.loads((out / "crawl.json").read_text())["images"]}
    for name, (image, _) in HISTORY.items():
        want = "clean" if "clean" in image else "backdoored-reachable"
        if verdicts.get(name, {}).get("verdict") != want:
            problems.append(f"  crawl: {name}: expected {want}, got {verdicts.get(name, {}).get('verdict')}")
    base = verdicts.get("demo/app:1.0", {}).get("base") or ""
    if not base.startswith(f"{host}/demo/base:2024-03-28@"):
        problems.append(f"  crawl: demo/app:1.0 should be built on demo/base:2024-03-28, base is {base!r}")
    print(f"    {len(verdicts)} images judged, {fetched} blobs downloaded (layers shared by several images: once)")
    step("lineage of every infected base: layerhound lineage --db … --infected")
    subprocess.run([*cli, "lineage", "--db", db, "--infected"], cwd=REPO)
    step(f"advice for an app on the old base: layerhound advise --db … {host}/demo/app:1.0")
    advice = subprocess.run([*cli, "advise", "--db", db, "--no-scan", "--format", "json", f"{host}/demo/app:1.0"],
                            cwd=REPO, capture_output=True, text=True)
    document = json.loads(advice.stdout) if advice.returncode == 0 else {}
    for line in document.get("advice", []):
        print(f"    {line}")
    move_to, rebuild_on = document.get("move_to") or {}, document.get("rebuild_on") or {}
    if move_to.get("tag") != "2.0" or rebuild_on.get("tag") != "2024-04-10":
        problems.append(f"  advise: expected move to demo/app:2.0 and rebuild on demo/base:2024-04-10, got {document}")
    rules = out / "team.yar"
    rules.write_text('rule team_probe { strings: $a = "lh_sim_probe" condition: $a }\n')
    step("re-judging the stored images offline with a team's YARA rule (no registry request): "
         "layerhound rejudge --db … --rules out/demo/team.yar")
    rejudged = subprocess.run([*cli, "rejudge", "--db", db, "--rules", str(rules), "--format", "json"],
                              cwd=REPO, capture_output=True, text=True)
    print(f"    {rejudged.stderr.strip()}")
    counts = json.loads(rejudged.stdout).get("counts", {}) if rejudged.stdout.startswith("{") else {}
    if rejudged.returncode != 0 or counts.get("rejudged") != len(verdicts):
        problems.append(f"  rejudge exited {rejudged.returncode}, re-judged {counts.get('rejudged')} of "
                        f"{len(verdicts)}: {rejudged.stderr.strip()}")
    step("writing the store's reports: layerhound report --db … --format html|sarif|openvex|cyclonedx|markdown")
    suffixes = {"html": "html", "sarif": "sarif", "openvex": "openvex.json", "cyclonedx": "cdx.json",
                "markdown": "md"}
    for fmt, suffix in suffixes.items():
        path = out / f"report.{suffix}"
        done = subprocess.run([*cli, "report", "--db", db, "--format", fmt, "-o", str(path)], cwd=REPO)
        if done.returncode not in (0, 1) or not path.exists():
            problems.append(f"  report --format {fmt} exited {done.returncode}")
        else:
            print(f"    {fmt:9} {shown(path)}")
    return problems


def engine_scan(layout: Path, out: Path) -> list[str]:
    """Load one image into a private podman and scan it through the Docker Engine API, as a user's own build."""
    podman = Podman(out / "podman")
    name = "localhost/demo/myapp:latest"
    step(f"loading {name} into a private podman (vfs storage under {shown(podman.workdir)}) and starting its "
         "API service (podman system service: the Docker Engine API on a unix socket)…")
    image_id = podman.run("pull", "-q", f"oci:{layout}:backdoored-sshd").split()[-1]
    podman.run("tag", image_id, name)
    podman.start()
    try:
        problems = []
        for reference, variable, source in ((f"docker-daemon:{name}", "DOCKER_HOST", "docker-daemon"),
                                            (name, "CONTAINER_HOST", "podman")):
            step(f"scanning the engine's image: {variable}={podman.url} layerhound scan {reference}")
            done = subprocess.run(
                [sys.executable, "-m", "layerhound", "scan", "--no-cache", "--no-progress", "--format", "json",
                 reference], cwd=REPO, capture_output=True, text=True, env={**os.environ, variable: podman.url},
                check=False,
            )
            [image] = json.loads(done.stdout)["images"] if done.stdout.strip() else [{}]
            print(f"    {reference}: {image.get('verdict')} (from {image.get('source')}, "
                  f"image ID {str(image.get('digest'))[:19]}…)")
            if (image.get("verdict"), image.get("source")) != ("backdoored-reachable", source):
                problems.append(f"  {reference}: expected backdoored-reachable from {source}, got "
                                f"{image.get('verdict')} from {image.get('source')}: {done.stderr.strip()}")
        return problems
    finally:
        podman.stop()


def timed_scan(command: list[str], registry: DemoRegistry) -> tuple[float, int]:
    """One run of the CLI: (wall-clock seconds, blobs it fetched from the registry)."""
    blobs, began = registry.blob_downloads(), time.monotonic()
    done = subprocess.run(command, cwd=REPO)
    if done.returncode not in (0, 1):  # 1 means "backdoored images found", which is the point; 2 is an error
        sys.exit(f"demo FAILED: layerhound exited {done.returncode}: {' '.join(command[3:])}")
    return time.monotonic() - began, registry.blob_downloads() - blobs


HISTORY = {  # repository:tag -> (image, created): a base's history and an app built on it
    "demo/base:2024-03-28": ("base-infected", "2024-03-28T00:00:00Z"),
    "demo/base:2024-04-10": ("base-clean", "2024-04-10T00:00:00Z"),
    "demo/app:1.0": ("app-on-infected-1", "2024-03-29T00:00:00Z"),
    "demo/app:1.1": ("app-on-infected-2", "2024-04-02T00:00:00Z"),
    "demo/app:2.0": ("app-on-clean", "2024-04-12T00:00:00Z"),
}


def history_tag(name: str) -> str:
    return name.replace("/", "-").replace(":", "-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo", help="output directory (replaced)")
    args = parser.parse_args()
    out: Path = args.out.expanduser().resolve()
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the `finally` that stops the registry
    prepare(out)
    layout, archive = build_images(out)

    registry = DemoRegistry(out / "registry", "anonymous")
    host, report = registry.host, out / "report.json"
    refs = {f"docker://{host}/{REPOSITORY}:{tag}": verdict for tag, verdict in EXPECTED.items()}
    refs[f"docker-archive:{archive}"] = EXPECTED["backdoored-sshd"]
    scan = [sys.executable, "-m", "layerhound", "scan", "--insecure-registry", host, "--cache-dir", str(out / "cache"),
            *refs]
    step(f"starting Debian's docker-registry on {host} (anonymous, plain HTTP, storage in {shown(registry.workdir)})…")
    try:
        registry.start()
        push_and_list(layout, registry)
        step("scanning from the registry and a docker-archive with the real CLI, cache empty: layerhound "
             + " ".join(scan[3:]).replace(str(REPO) + "/", ""))
        began = time.monotonic()
        subprocess.run([*scan[:4], "--help"], cwd=REPO, capture_output=True)  # the CLI's start-up, for scale
        startup = time.monotonic() - began
        first, first_blobs = timed_scan(scan, registry)
        step("scanning the same images again with the same --cache-dir, as JSON…")
        again, again_blobs = timed_scan([*scan, "--no-progress", "--format", "json", "-o", str(report)], registry)
        crawl_problems = crawl_history(layout, registry, out)
        crawl_problems += engine_scan(layout, out)
    finally:
        registry.stop()
    print(f"    JSON report (layerhound.scan/v1): {report}")
    fetched = "no blob downloaded" if again_blobs == 0 else f"{again_blobs} blobs downloaded"
    step(f"stopped the registry. First scan {first:.1f} s ({first_blobs} blobs downloaded), cached re-scan "
         f"{again:.1f} s: {fetched} (wall clock; the CLI alone starts in {startup:.1f} s)")

    images = json.loads(report.read_text())["images"]
    wrong = []
    for image in images:
        want = expected_for(image["ref"], refs)
        if want != image["verdict"]:
            reasons = "\n    ".join(image["reasons"])
            wrong.append(f"  {image['ref']}: expected {want}, got {image['verdict']}\n    {reasons}")
    if len(images) != len(refs):
        wrong.append(f"  expected {len(refs)} images in the report, got {len(images)}")
    if again_blobs or not all(layer["cached"] for image in images for layer in image["layers"]):
        wrong.append(f"  the re-scan did not come from the cache ({again_blobs} blobs downloaded)")
    wrong.extend(crawl_problems)
    if wrong:
        print("demo FAILED: results differ from the expected ones:\n" + "\n".join(wrong), file=sys.stderr)
        return 1
    print(f"all {len(images)} verdicts as expected ({time.monotonic() - started:.1f}s)\n")
    print(
        "What this showed: five images were built here from Debian's own liblzma5, libsystemd0 and openssh-server "
        "bytes plus the project's inert test implant, pushed with skopeo to a real registry (Debian's docker-registry, "
        "started on 127.0.0.1 for this run and stopped again) and pulled from it by layerhound over the OCI "
        "distribution API, which told them apart from the bytes alone. The image whose sshd would load the implanted "
        "liblzma is backdoored-reachable (also when read from a `docker save` archive); the same implant copied in "
        "quietly, with the package database still claiming Debian's clean 5.4.1, is still found (backdoored-dormant: "
        "nothing starts sshd) where a version-matching scanner would say clean; an image that deleted the implant in "
        "a later layer still ships it in a lower layer (backdoor-in-history); and an image whose package database "
        "only claims 5.6.1-1 over clean bytes is flagged as affected-version-not-injected rather than as backdoored. "
        "The re-scan with the same --cache-dir took every layer's result and image config from the cache (keyed by "
        "digest) and fetched only the manifests. The crawl then walked every tag of three repositories into a results "
        "store (each shared layer downloaded once), found that demo/app:1.0 and 1.1 inherit the implant from "
        "demo/base:2024-03-28 (lineage: their layer chains start with its chain), and advised moving to demo/app:2.0 "
        "or rebuilding on demo/base:2024-04-10, the newest clean tags by date. Last, the reachable image was loaded "
        "into a local podman and scanned through its Docker Engine API, by transport and by bare name, as a user "
        "would scan the image they just built: the export was read off the socket, nothing written to disk."
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("demo: interrupted (the registry was stopped)")
