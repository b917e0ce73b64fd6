"""Which images are built on which: the diff_id-chain graph of a results store."""

from layerhound.lineage.graph import INFECTED, Lineage, Name, Node

__all__ = ["INFECTED", "Lineage", "Name", "Node"]
