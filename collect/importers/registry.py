"""The importable datasets by name: what `python -m collect.importers NAME` offers.

A static table, as `train/losses.py:LOSSES` is: adding a dataset is one module defining a
`Source` and one entry here.
"""

from __future__ import annotations

from collect.importers import cityscapes, culane, tusimple
from collect.importers.source import Source

SOURCES: dict[str, Source] = {s.name: s for s in (cityscapes.SOURCE, culane.SOURCE, tusimple.SOURCE)}


__all__ = ["SOURCES"]
