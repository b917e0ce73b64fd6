"""The merged view applies whiteouts, opaque dirs, links like an overlay would."""

from __future__ import annotations

from layerhound.fs.merged import MergedView
from layerhound.model import Entry, EntryType, LayerResult


def layer(*entries: Entry, whiteouts: tuple[str, ...] = (), opaque: tuple[str, ...] = ()) -> LayerResult:
    return LayerResult(
        digest=None, size=0, entries=list(entries), whiteouts=list(whiteouts), opaque_dirs=list(opaque)
    )


def f(path: str) -> Entry:
    return Entry(path, EntryType.FILE, 10)


def d(path: str) -> Entry:
    return Entry(path, EntryType.DIR)


def s(path: str, target: str) -> Entry:
    return Entry(path, EntryType.SYMLINK, linkname=target)


def h(path: str, target: str) -> Entry:
    return Entry(path, EntryType.HARDLINK, linkname=target)


def paths(view: MergedView) -> set[str]:
    return {p for p, _ in view.walk()}


def test_whiteout_deletes_file_and_subtree_of_lower_layers() -> None:
    view = MergedView.build(
        [
            layer(d("/a"), f("/a/x"), d("/a/sub"), f("/a/sub/y"), f("/b")),
            layer(whiteouts=("/a/sub", "/b")),
        ]
    )
    assert paths(view) == {"/", "/a", "/a/x"}


def test_whiteout_then_recreate_in_same_layer_keeps_new_file() -> None:
    view = MergedView.build([layer(f("/lib/x")), layer(f("/lib/x"), whiteouts=("/lib/x",))])
    node = view.lookup("/lib/x")
    assert node is not None and node.layer_index == 1 and node.origin == (1, "/lib/x", False)


def test_opaque_dir_hides_lower_children_only() -> None:
    view = MergedView.build(
        [
            layer(d("/etc"), f("/etc/old"), d("/etc/deep"), f("/etc/deep/z")),
            layer(d("/etc"), f("/etc/new"), opaque=("/etc",)),
        ]
    )
    assert paths(view) == {"/", "/etc", "/etc/new"}


def test_upper_file_replaces_lower_and_changes_origin() -> None:
    view = MergedView.build([layer(f("/usr/lib/liblzma.so.5")), layer(f("/usr/lib/liblzma.so.5"))])
    node = view.lookup("/usr/lib/liblzma.so.5")
    assert node is not None and node.origin == (1, "/usr/lib/liblzma.so.5", False)


def test_hard_link_shares_origin_and_survives_deletion_of_original() -> None:
    view = MergedView.build([layer(f("/a"), h("/b", "/a")), layer(whiteouts=("/a",))])
    assert view.lookup("/a") is None
    node = view.lookup("/b")
    assert node is not None and node.origin == (0, "/a", False)


def test_symlinks_resolve_inside_the_image_including_usrmerge() -> None:
    view = MergedView.build(
        [
            layer(
                s("/lib", "usr/lib"),
                d("/usr"),
                d("/usr/lib"),
                f("/usr/lib/liblzma.so.5.4.1"),
                s("/usr/lib/liblzma.so.5", "liblzma.so.5.4.1"),
                s("/etc/escape", "../../../../usr/lib/liblzma.so.5"),
                s("/loop", "/loop"),
            )
        ]
    )
    assert view.resolve("/lib/liblzma.so.5") is not None
    assert view.resolve("/lib/liblzma.so.5")[0] == "/usr/lib/liblzma.so.5.4.1"  # type: ignore[index]
    assert view.resolve("/etc/escape")[0] == "/usr/lib/liblzma.so.5.4.1"  # type: ignore[index]
    assert view.resolve("/loop") is None
    assert view.resolve("/usr/lib/liblzma.so.5.4.1/x") is None
    assert view.resolve("/missing") is None


def test_file_replacing_directory_drops_its_children() -> None:
    view = MergedView.build([layer(d("/x"), f("/x/y")), layer(f("/x"))])
    assert paths(view) == {"/", "/x"}


def listing(view: MergedView) -> list[tuple[str, str, int, object]]:
    return [(path, node.entry.type.value, node.layer_index, node.origin) for path, node in view.walk()]


def test_a_fork_shares_nothing_it_changes() -> None:
    """Copy on write: what a fork changes (puts, whiteouts, opaque dirs) never shows in its parent."""
    from layerhound.fs.merged import MergedView as View

    base = View.build([layer(d("/etc"), f("/etc/a"), f("/etc/b"), d("/opt"), f("/opt/x"), h("/etc/link", "/etc/a"))])
    before = listing(base)
    fork = base.fork()
    fork.apply(1, layer(f("/etc/c"), f("/opt/y"), whiteouts=("/etc/a",), opaque=("/opt",)))
    assert listing(base) == before
    assert base.final_paths((0, "/etc/a", False)) == ["/etc/a", "/etc/link"]
    assert fork.final_paths((0, "/etc/a", False)) == ["/etc/link"]  # deleted, but its hard link keeps the bytes
    assert fork.lookup("/opt/x") is None and fork.lookup("/opt/y") is not None
    # The parent can still change on its own, and the fork does not see it.
    base.apply(1, layer(f("/etc/d")))
    assert fork.lookup("/etc/d") is None and base.lookup("/etc/c") is None


def test_views_from_the_cache_equal_fresh_ones() -> None:
    from layerhound.fs.merged import MergedView as View
    from layerhound.fs.merged import ViewCache

    def named(n: int, result: LayerResult) -> LayerResult:
        result.digest = f"sha256:{n:064x}"
        return result

    root = named(1, layer(d("/usr"), d("/usr/lib"), f("/usr/lib/a.so"), f("/usr/lib/b.so"), d("/etc"), f("/etc/x")))
    mid = named(2, layer(f("/usr/lib/c.so"), h("/usr/lib/c2.so", "/usr/lib/c.so"), whiteouts=("/etc/x",)))
    tops = [named(10 + n, layer(f(f"/app/{n}"), whiteouts=("/usr/lib/a.so",) if n % 2 else (),
                                opaque=("/usr/lib",) if n == 3 else ())) for n in range(6)]
    cache = ViewCache()
    for top in tops:
        chain = [root, mid, top]
        assert listing(View.build(chain, cache)) == listing(View.build(chain))
    assert cache.hits == len(tops) - 1
