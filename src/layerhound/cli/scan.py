"""``layerhound scan REF…``: judge images and print a verdict for each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from layerhound.cli.common import (
    add_fail_on,
    add_registry_options,
    add_rules_options,
    exit_status,
    positive_int,
    registry_settings,
    use_color,
    warn,
    with_user_rules,
    write_output,
)
from layerhound.errors import ReferenceError_, UsageError
from layerhound.report.formats import ReportFormat

if TYPE_CHECKING:
    from layerhound.model import ImageResult


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = commands.add_parser(
        "scan",
        help="scan images and print a verdict for each",
        description="Scan images for CVE-2024-3094. References: NAME[:TAG] (a local engine's image, else "
        "the registry: see --image-src), docker://HOST/REPO[:TAG|@DIGEST] (a registry, never an engine), "
        "docker-daemon:NAME[:TAG|@DIGEST|ID], podman:NAME…, oci:DIR[:REF], oci-archive:FILE[:REF], "
        "docker-archive:FILE[:REF|@N], dir:DIR (skopeo), rootfs:DIR, host: (this machine's /), file:PATH.",
    )
    scan.add_argument("references", nargs="+", metavar="REF", help="image reference(s)")
    scan.add_argument("--format", choices=[f.value for f in ReportFormat], default="table",
                      help="table (default), json (layerhound.scan/v1), sarif (2.1.0), cyclonedx (1.6 with VEX), "
                      "openvex (0.2.0), markdown, html (one self-contained page; use -o)")
    scan.add_argument("-o", "--output", type=Path, help="write the report to FILE instead of stdout")
    scan.add_argument("--platform", default="all", help="'all' (default) or OS/ARCH[/VARIANT] of an index")
    add_fail_on(scan)
    add_rules_options(scan)
    scan.add_argument("--jobs", type=positive_int, metavar="N",
                      help="processes walking the large layers of an image at once (default: one per core; "
                      "1: every layer in this process)")
    scan.add_argument("--no-progress", action="store_true", help="never draw a progress display")
    scan.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="keep per-layer results in DIR/layers.sqlite3 (default: the user's cache directory, "
        "~/.cache/layerhound on Linux)",
    )
    scan.add_argument("--no-cache", action="store_true", help="neither read nor write the layer cache")
    scan.add_argument(
        "--image-src",
        metavar="LIST",
        help="where a bare NAME[:TAG] is looked for, in order: docker (DOCKER_HOST, the Docker context, "
        "/var/run/docker.sock), podman (CONTAINER_HOST, $XDG_RUNTIME_DIR/podman/podman.sock, "
        "/run/podman/podman.sock), remote (the registry). Default: docker,podman,remote. An engine that is not "
        "running or lacks the image is passed over; transports (docker://, docker-daemon:, podman:) never fall back",
    )
    scan.add_argument("--cross-mounts", action="store_true",
                      help="let rootfs: and host: walks enter other mounted filesystems (never /proc, /sys, "
                      "/dev, /run or other pseudo filesystems)")
    scan.add_argument("--exclude", action="append", default=[], metavar="DIR",
                      help="a host directory rootfs: and host: walks do not enter, listed as skipped (repeatable)")
    add_registry_options(scan)
    scan.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: ``layerhound --help`` and the other commands never load them.
    from layerhound.detectors.registry import ALL_DETECTORS, rules_version
    from layerhound.registry.session import RegistrySession
    from layerhound.report.formats import render
    from layerhound.scan import scan_references
    from layerhound.scan_pool import LayerPool, default_workers
    from layerhound.sources.options import DEFAULT_IMAGE_SRC, SourceOptions, parse_image_src
    from layerhound.sources.refs import parse_reference

    for reference in args.references:
        try:
            parse_reference(reference)
        except ReferenceError_ as exc:
            raise UsageError(str(exc)) from exc
    detectors = with_user_rules(ALL_DETECTORS, args)
    image_src = DEFAULT_IMAGE_SRC if args.image_src is None else parse_image_src(args.image_src)
    options = SourceOptions(image_src=image_src, cross_mounts=args.cross_mounts, exclude=tuple(args.exclude))
    show_progress = not args.no_progress and sys.stderr.isatty()
    results: list[ImageResult] = []
    cache = None
    if not args.no_cache:  # --no-cache loads neither sqlite3 nor the store
        from layerhound.store.cache import open_cache

        cache = open_cache(args.cache_dir, warn=warn)
    settings = registry_settings(args)
    pool = LayerPool(default_workers(args.jobs), settings)
    with RegistrySession(settings) as session:
        try:
            if show_progress:
                from layerhound.report.progress import ProgressObserver

                with ProgressObserver() as progress:
                    results.extend(scan_references(args.references, detectors, args.platform, progress, cache,
                                                   session=session, options=options, pool=pool))
            else:
                results.extend(scan_references(args.references, detectors, args.platform, None, cache,
                                               session=session, options=options, pool=pool))
        finally:
            pool.close()
    if cache is not None:
        cache.close()

    text = render(ReportFormat(args.format), results, rules_version(detectors), color=use_color(args.output))
    write_output(text, args.output)
    return exit_status(results, args.fail_on)
