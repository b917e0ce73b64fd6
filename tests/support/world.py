"""A small registry world for crawl tests, the demo and the crawl benchmark.

Bases are built from a real debootstrapped Debian root (one gzip layer blob,
shared byte for byte), one of them made positive with the project's own test
implant; derived images add small layers of their own, some two and three
levels deep, across several repositories, each with its own ``created`` date.
One tag (``library/debian:sid``) is pushed first at an infected image and later
moved to a clean one (``move_sid``), as the study's "historical artifacts" were.

    world = build_world(layout_dir, bookworm_layer, implant_so)
    world.push(registry)                 # every tag, with skopeo
    world.move_sid(registry)             # sid now points at the clean image

``World.images`` says, per ``repository:tag``, the layers, the expected verdict
and the expected nearest infected base: the tests compare the crawl with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.support.imagewriter import ImageSpec, Layer, WrittenImage, file, symlink, write_oci
from tests.support.registry import RegistryServer, push

LIB = "/usr/lib/x86_64-linux-gnu"
SSHD = ["/usr/sbin/sshd", "-D"]
REACHABLE, DORMANT, CLEAN = "backdoored-reachable", "backdoored-dormant", "clean"


@dataclass(frozen=True)
class Planned:
    """One tag of the world."""

    repository: str
    tag: str
    spec: ImageSpec
    verdict: str
    base: str | None
    """``repository:tag`` of the nearest infected image below it (None: none)."""
    layout_tag: str
    written: WrittenImage | None = None

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass
class World:
    layout: Path
    images: dict[str, Planned] = field(default_factory=dict)
    """``repository:tag`` → the image pushed there (``library/debian:sid`` as first pushed)."""
    sid_clean: Planned | None = None
    """What ``library/debian:sid`` points at after ``move_sid``."""
    shared_layers: dict[str, str] = field(default_factory=dict)
    """Name → blob digest of the layers many images share (the Debian root, the implant)."""

    def push(self, registry: RegistryServer) -> None:
        for planned in self.images.values():
            push(f"oci:{self.layout}:{planned.layout_tag}", registry, planned.repository, planned.tag)

    def push_tag(self, registry: RegistryServer, name: str) -> None:
        planned = self.images[name]
        push(f"oci:{self.layout}:{planned.layout_tag}", registry, planned.repository, planned.tag)

    def move_sid(self, registry: RegistryServer) -> None:
        assert self.sid_clean is not None
        push(f"oci:{self.layout}:{self.sid_clean.layout_tag}", registry, "library/debian", "sid")

    @property
    def repositories(self) -> list[str]:
        return sorted({p.repository for p in self.images.values()})


def _app_layer(name: str, number: int) -> Layer:
    return Layer.files(
        {f"/opt/{name}/app-{number}.txt": f"{name} build {number}\n", f"/opt/{name}/VERSION": f"{number}\n"}
    )


def _date(day: int, hour: int = 0) -> str:
    """A distinct ``created`` in March and April 2024 (day 1 = 2024-03-01)."""
    month, day_of_month = (3, day) if day <= 31 else (4, day - 31)
    return f"2024-{month:02d}-{day_of_month:02d}T{hour:02d}:00:00Z"


def build_world(layout: Path, bookworm: Layer, implant: bytes, *, scale: int = 1) -> World:
    """Write every image of the world into one OCI layout (one layout tag per image).

    ``scale`` multiplies the number of derived images (the benchmark uses more).
    """
    world = World(layout)
    implant_layer = Layer.files(
        {f"{LIB}/liblzma.so.5.6.1": file(implant, 0o755), f"{LIB}/liblzma.so.5": symlink("liblzma.so.5.6.1")}
    )
    update_layer = Layer.files({"/etc/debian_version": "12.5\n", "/etc/motd": "patched\n"})
    sid_layer = Layer.files({"/etc/debian_version": "trixie/sid\n"})

    def add(repository: str, tag: str, layers: list[Layer], created: str, verdict: str, base: str | None,
            cmd: list[str] | None = None) -> Planned:
        spec = ImageSpec(layers, cmd=cmd or ["/bin/sh"], created=created,
                         exposed_ports=["22/tcp"] if cmd == SSHD else ())
        layout_tag = f"{repository.replace('/', '-')}-{tag}"
        written = write_oci(layout, spec, tag=layout_tag)
        planned = Planned(repository, tag, spec, verdict, base, layout_tag, written)
        world.images[planned.name] = planned
        return planned

    old = add("library/debian", "bookworm-20240301", [bookworm, implant_layer], _date(1), REACHABLE, None, SSHD)
    add("library/debian", "bookworm-20240415", [bookworm, update_layer], _date(46), CLEAN, None, SSHD)
    add("library/debian", "sid", [bookworm, implant_layer, sid_layer], _date(20), REACHABLE, old.name, SSHD)
    sid_clean_spec = ImageSpec(
        [bookworm, update_layer, sid_layer], cmd=SSHD, created=_date(50), exposed_ports=["22/tcp"]
    )
    written = write_oci(layout, sid_clean_spec, tag="library-debian-sid-clean")
    world.sid_clean = Planned("library/debian", "sid", sid_clean_spec, CLEAN, None, "library-debian-sid-clean", written)
    add("vendor/ssh", "1.0", [bookworm, implant_layer, _app_layer("ssh", 1)], _date(5), REACHABLE, old.name, SSHD)

    webs = 20 * scale
    for n in range(1, webs + 1):
        if n == webs:  # the newest web tag, rebuilt on the clean base
            add("team/web", f"v{n}", [bookworm, update_layer, _app_layer("web", n)], _date(47), CLEAN, None)
        else:
            add("team/web", f"v{n}", [bookworm, implant_layer, _app_layer("web", n)], _date(2 + n % 28, n % 24),
                DORMANT, old.name)
    for n in range(1, 15 * scale + 1):
        add("team/api", f"a{n}", [bookworm, update_layer, _app_layer("api", n)], _date(47 + n % 10, n % 24),
            CLEAN, None)
    for n in range(1, 10 * scale + 1):
        web = world.images[f"team/web:v{n}"]
        add("team/worker", f"w{n}", [*web.spec.layers, _app_layer("worker", n)], _date(3 + n % 28, n % 24),
            DORMANT, web.name)
    for n in range(1, 8 * scale + 1):
        worker = world.images[f"team/worker:w{n}"]
        add("team/cron", f"c{n}", [*worker.spec.layers, _app_layer("cron", n)], _date(4 + n % 28, n % 24),
            DORMANT, worker.name)
    assert old.written is not None
    world.shared_layers = {"debian root": old.written.layers[0].digest, "implant": old.written.layers[1].digest}
    return world
