"""The merged view of an image's final filesystem, built from layer results.

Layers are applied lowest first, the way an overlay or a runtime's layer
applier would: whiteouts delete a path and everything below it from lower
layers, an opaque directory hides all lower-layer children, a later entry
replaces an earlier one. Hard links share the identity (``origin``) of the
member that carried the data, so a finding on that data follows every name
the file still has. Symlinks are resolved inside the image only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from layerhound.model import Entry, EntryType, LayerResult

MAX_SYMLINKS = 40
"""Same bound as Linux's path resolution (ELOOP)."""

Origin = tuple[int, str]
"""(layer index, path of the member that carried the bytes in that layer)."""


@dataclass(slots=True)
class Node:
    """A path of the final filesystem and where its bytes came from."""

    entry: Entry
    layer_index: int
    origin: Origin | None = None
    children: dict[str, Node] | None = None

    @property
    def is_dir(self) -> bool:
        return self.children is not None


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


@dataclass
class MergedView:
    """The final filesystem as a tree of ``Node``s."""

    root: Node = field(
        default_factory=lambda: Node(Entry("/", EntryType.DIR, 0, 0o755), -1, None, {})
    )

    @classmethod
    def build(cls, layers: Sequence[LayerResult]) -> MergedView:
        view = cls()
        for index, layer in enumerate(layers):
            view.apply(index, layer)
        return view

    def apply(self, index: int, layer: LayerResult) -> None:
        """Apply one layer on top of what is there."""
        for path in layer.whiteouts:
            self._remove(path)
        for path in layer.opaque_dirs:
            node = self.lookup(path)
            if node is not None and node.children is not None:
                node.children = {
                    name: child
                    for name, child in node.children.items()
                    if child.layer_index >= index
                }
        origins: dict[str, Origin | None] = {}
        for entry in layer.entries:
            origin: Origin | None = None
            if entry.type is EntryType.FILE:
                origin = (index, entry.path)
            elif entry.type is EntryType.HARDLINK:
                origin = origins.get(entry.linkname)
                if origin is None:
                    target = self.lookup(entry.linkname)
                    origin = target.origin if target is not None else None
            origins[entry.path] = origin
            self._put(entry, index, origin)

    def _parent(self, path: str, index: int) -> Node:
        """The directory node holding ``path``, creating implied directories."""
        node = self.root
        for part in _components(posixpath.dirname(path)):
            assert node.children is not None
            child = node.children.get(part)
            if child is None or child.children is None:
                # Missing, or a non-directory in a lower layer: the tar says a
                # directory is here now (runtimes create it the same way).
                child = Node(Entry("/", EntryType.DIR, 0, 0o755), index, None, {})
                node.children[part] = child
            node = child
        return node

    def _put(self, entry: Entry, index: int, origin: Origin | None) -> None:
        if entry.path == "/":
            return
        parent = self._parent(entry.path, index)
        assert parent.children is not None
        name = posixpath.basename(entry.path)
        existing = parent.children.get(name)
        if entry.type is EntryType.DIR:
            children = existing.children if existing is not None and existing.is_dir else None
            parent.children[name] = Node(entry, index, None, children if children is not None else {})
        else:
            parent.children[name] = Node(entry, index, origin, None)

    def _remove(self, path: str) -> None:
        parts = _components(path)
        if not parts:
            return
        node = self.root
        for part in parts[:-1]:
            if node.children is None or part not in node.children:
                return
            node = node.children[part]
        if node.children is not None:
            node.children.pop(parts[-1], None)

    def lookup(self, path: str) -> Node | None:
        """The node at ``path`` taken literally (no symlink is followed)."""
        node = self.root
        for part in _components(path):
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

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
                for name in sorted(node.children, reverse=True):
                    stack.append((posixpath.join(path, name), node.children[name]))
