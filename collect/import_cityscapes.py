"""Kept for the command users type: `python -m collect.import_cityscapes ...` =
`python -m collect.importers cityscapes ...`."""

import sys

from collect.importers.cityscapes import import_cityscapes
from collect.importers.cli import forward

main = forward("cityscapes")

if __name__ == "__main__":
    sys.exit(main())

__all__ = ["import_cityscapes", "main"]
