"""What an importer provides: its frames (`SourceFrame`), its errors (`SourceError`), and the
adapter (`Source`) that offers it as a subcommand of the one importer CLI.

An importer only knows its dataset's layout; everything else (conversion, the dataset format,
atomic publication, the command line) is shared, so adding a dataset is one module with one
`Source` listed in `collect.importers.registry`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collect.importers.convert import ImportResult

#: (source image height, width), (output height, width) -> HxW uint8 tag ids at the output size.
LabelMaker = Callable[[tuple[int, int], tuple[int, int]], np.ndarray]


class SourceError(ValueError):
    """The source dataset is not what the importer expects; the message names the file."""


@dataclass(frozen=True)
class SourceFrame:
    """One image of the source dataset and the recipe for its label image."""

    name: str  # path relative to the source root, '/' separated: errors and the manifest name it
    episode: str  # frames sharing it form one episode (a city, a clip, a video)
    town: str  # the index's `town` column (city, driver folder, dataset name)
    image: Path
    labels: LabelMaker


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A source with no options beyond the shared ones."""


@dataclass(frozen=True)
class Source:
    """One importable dataset as the CLI offers it: ``python -m collect.importers NAME ROOT ...``.

    The CLI adds ROOT and the shared options (--out, --size, --overwrite, --workers,
    --no-progress, --debug) to every source, `add_arguments` the dataset's own, and then calls
    ``function(root, out, **options(args), size=..., overwrite=..., workers=..., progress=...)``.
    """

    name: str
    description: str  # one line: what is imported and what its labels become
    examples: tuple[str, ...]  # whole command lines for the epilog
    function: Callable[..., ImportResult]
    options: Callable[[argparse.Namespace], dict[str, Any]]  # the dataset's keyword arguments from its flags
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments


__all__ = ["LabelMaker", "Source", "SourceError", "SourceFrame"]
