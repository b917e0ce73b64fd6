"""The merged view of an image's final filesystem, built from layer results.

Layers are applied lowest first, the way an overlay or a runtime's layer
applier would: whiteouts delete a path and everything below it from lower
layers, an opaque directory hides all lower-layer children, a later entry
replaces an earlier one. Hard links share the identity (``origin``) of the
member that carried the data, so a finding on that data follows every name
the file still has. Symlinks are resolved inside the image only.

Views fork in O(1) (``fork``): nodes are shared copy-on-write, and a node is
cloned (with its parents) only when the fork changes something below it. A
crawl keeps the view of a shared base chain (``ViewCache``) and applies only
each derived image's own layers on a fork of it: hundreds of images built on
one Debian root cost one merge of that root.
"""

from __future__ import annotations

import posixpath
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

from layerhound.model import Entry, EntryType, LayerResult

MAX_SYMLINKS = 40
"""Same bound as Linux's path resolution (ELOOP)."""

Origin = tuple[int, str, bool]
"""(layer index, path of the member that carried the bytes in that layer, whether a later
member of that layer replaced that path): the bytes a hard link made before the replacement
keeps are the earlier copy's, as unpacking leaves them (checked against umoci)."""


@dataclass(slots=True)
class Node:
    """A path of the final filesystem and where its bytes came from."""

    entry: Entry
    layer_index: int
    link_origin: Origin | None = None
    """A hard link's origin: the member that carried its bytes (a regular file's is its own)."""
    children: dict[str, Node] | None = None
    """A directory's entries, keyed by their full path ("/usr/lib/x", the member's own ``path``
    string, so a million members hold no second copy of their names)."""
    owner: object = None
    """The view allowed to change this node in place; any other view clones it first."""

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @property
    def origin(self) -> Origin | None:
        """Where the bytes came from (see ``Origin``); None for what carries none.

        Made on demand, not stored: a million-member layer would hold a million tuples.
        """
        if self.entry.type is EntryType.FILE:
            return (self.layer_index, self.entry.path, False)
        return self.link_origin


IMPLIED_DIR = Entry("/", EntryType.DIR, 0, 0o755)
"""The entry of a directory no member names, only implies (``a/b`` without ``a/``)."""


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def _prefixes(path: str) -> list[str]:
    """The canonical path of every directory level of ``path``: "/a//b" -> ["/a", "/a/b"]."""
    out: list[str] = []
    prefix = ""
    for part in _components(path):
        prefix = f"{prefix}/{part}"
        out.append(prefix)
    return out


class MergedView:
    """The final filesystem as a tree of ``Node``s."""

    def __init__(self) -> None:
        self._token = object()
        self.root = Node(IMPLIED_DIR, -1, None, {}, self._token)
        self.aliases: dict[Origin, set[str]] = {}
        """Paths whose bytes came from another member (hard links), by origin."""

    @classmethod
    def build(cls, layers: Sequence[LayerResult], cache: ViewCache | None = None) -> MergedView:
        """The view of ``layers`` applied in order; with ``cache``, from the longest cached prefix."""
        if cache is None:
            view = cls()
            for index, layer in enumerate(layers):
                view.apply(index, layer)
            return view
        return cache.build(layers)

    def fork(self) -> MergedView:
        """A view equal to this one that can change without changing it (nor this one it)."""
        other = MergedView.__new__(MergedView)
        other._token = object()
        other.root = self.root
        other.aliases = {origin: set(paths) for origin, paths in self.aliases.items()}
        self._token = object()  # nodes made so far are shared now: neither view may change them in place
        return other

    def apply(self, index: int, layer: LayerResult) -> None:
        """Apply one layer on top of what is there."""
        for path in layer.whiteouts:
            self._remove(path)
        for path in layer.opaque_dirs:
            node = self._owned_dir(path)
            if node is not None and node.children is not None:
                node.children = {
                    name: child
                    for name, child in node.children.items()
                    if child.layer_index >= index
                }
        for entry in layer.entries:
            origin: Origin | None = None
            if entry.type is EntryType.HARDLINK:
                # The target is an earlier member of this layer (already in the view) or a lower layer's file.
                target = self.lookup(entry.linkname)
                origin = target.origin if target is not None else None
                if origin is not None:
                    self.aliases.setdefault(origin, set()).add(entry.path)
            self._put(entry, index, origin)

    def final_paths(self, origin: Origin) -> list[str]:
        """Every path of the final filesystem that still shows the bytes of ``origin``."""
        candidates = [origin[1], *sorted(self.aliases.get(origin, ()))]
        found = []
        for path in dict.fromkeys(candidates):
            node = self.lookup(path)
            if node is not None and node.origin == origin:
                found.append(path)
        return found

    # -- copy on write -------------------------------------------------------

    def _own(self, node: Node) -> Node:
        if node.owner is self._token:
            return node
        children = dict(node.children) if node.children is not None else None
        return Node(node.entry, node.layer_index, node.link_origin, children, self._token)

    def _owned_root(self) -> Node:
        self.root = self._own(self.root)
        return self.root

    def _owned_dir(self, path: str) -> Node | None:
        """The existing node at ``path``, made changeable (with its parents); None if absent."""
        node = self._owned_root()
        for key in _prefixes(path):
            if node.children is None or key not in node.children:
                return None
            child = self._own(node.children[key])
            node.children[key] = child
            node = child
        return node

    def _parent(self, dirs: list[str], index: int) -> Node:
        """The directory node at the end of ``dirs`` (a path's ``_prefixes`` but its own), creating implied ones."""
        node = self._owned_root()
        for prefix in dirs:
            assert node.children is not None
            child = node.children.get(prefix)
            if child is None or child.children is None:
                # Missing, or a non-directory in a lower layer: the tar says a
                # directory is here now (runtimes create it the same way).
                child = Node(IMPLIED_DIR, index, None, {}, self._token)
            else:
                child = self._own(child)
            node.children[prefix] = child
            node = child
        return node

    def _put(self, entry: Entry, index: int, origin: Origin | None) -> None:
        keys = _prefixes(entry.path)
        if not keys:
            return
        *dirs, key = keys
        parent = self._parent(dirs, index)
        if key == entry.path:
            key = entry.path  # the member's own string object, not an equal copy
        assert parent.children is not None
        existing = parent.children.get(key)
        if entry.type is EntryType.DIR:
            children = None
            if existing is not None and existing.children is not None:
                children = existing.children if existing.owner is self._token else dict(existing.children)
            node = Node(entry, index, None, children if children is not None else {}, self._token)
        else:
            node = Node(entry, index, origin, None, self._token)
        parent.children.pop(key, None)  # so the dict keeps this key object, not the replaced one's
        parent.children[key] = node
        if existing is not None and existing.layer_index == index and existing.entry.type is EntryType.FILE:
            self._relink_replaced((index, key, False))

    def _relink_replaced(self, copy: Origin) -> None:
        """A path replaced within its own layer: hard links made to it keep the earlier copy's bytes."""
        links = self.aliases.pop(copy, None)
        if not links:
            return
        earlier: Origin = (copy[0], copy[1], True)
        for path in links:
            node = self._owned_dir(path)
            if node is not None and node.link_origin == copy:
                node.link_origin = earlier
        self.aliases.setdefault(earlier, set()).update(links)

    def _remove(self, path: str) -> None:
        keys = _prefixes(path)
        if not keys:
            return
        parent = self._owned_dir(keys[-2] if len(keys) > 1 else "/")
        if parent is not None and parent.children is not None:
            parent.children.pop(keys[-1], None)

    def lookup(self, path: str) -> Node | None:
        """The node at ``path`` taken literally (no symlink is followed)."""
        node: Node | None = self.root
        for key in _prefixes(path):
            children = node.children if node is not None else None
            if children is None:
                return None
            node = children.get(key)
            if node is None:
                return None
        return node

    def listing(self, path: str) -> dict[str, Node]:
        """A directory's entries by name (empty when ``path`` is no directory)."""
        node = self.lookup(path)
        if node is None or node.children is None:
            return {}
        return {posixpath.basename(key): child for key, child in node.children.items()}

    def resolve(self, path: str) -> tuple[str, Node] | None:
        """Follow symlinks inside the image, like the kernel would in a chroot.

        Returns the resolved absolute path and its node, or None when the path
        does not exist, loops, or passes through a non-directory.
        """
        pending = _components(path)
        resolved: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            node = self.lookup("/" + "/".join([*resolved, part]))
            if node is None:
                return None
            if node.entry.type is EntryType.SYMLINK:
                links += 1
                if links > MAX_SYMLINKS:
                    return None
                target = node.entry.linkname
                if target.startswith("/"):
                    resolved = []
                pending = _components(target) + pending
                continue
            if pending and not node.is_dir:
                return None
            resolved.append(part)
        final = "/" + "/".join(resolved)
        node = self.lookup(final)
        return (final, node) if node is not None else None

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every path of the final filesystem with its node, parents first."""
        stack: list[tuple[str, Node]] = [("/", self.root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if node.children:
                for key in sorted(node.children, reverse=True):
                    stack.append((key, node.children[key]))


class ViewCache:
    """Views of layer chains (by layer digests), kept to be forked: the shared bases of a crawl.

    ``build`` starts from the longest cached prefix of a chain and keeps the
    view of the chain minus its last layer (the image's base) for the next
    image built on it. Chains with a layer without a digest are built afresh.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._views: OrderedDict[tuple[Hashable, ...], MergedView] = OrderedDict()
        self.hits = 0

    def build(self, layers: Sequence[LayerResult]) -> MergedView:
        keys = [(layer.digest, layer.diff_id) for layer in layers]
        if any(digest is None for digest, _ in keys):
            return MergedView.build(layers)
        start, view = 0, None
        for length in range(len(keys) - 1, 0, -1):
            cached = self._views.get(tuple(keys[:length]))
            if cached is not None:
                self._views.move_to_end(tuple(keys[:length]))
                start, view = length, cached.fork()
                self.hits += 1
                break
        view = view or MergedView()
        for index in range(start, len(layers)):
            if index == len(layers) - 1 and index > 0 and index != start:
                self._keep(tuple(keys[:index]), view.fork())
            view.apply(index, layers[index])
        return view

    def _keep(self, key: tuple[Hashable, ...], view: MergedView) -> None:
        self._views[key] = view
        self._views.move_to_end(key)
        while len(self._views) > self.size:
            self._views.popitem(last=False)
