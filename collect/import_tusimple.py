"""Kept for the command users type: `python -m collect.import_tusimple ...` =
`python -m collect.importers tusimple ...`."""

import sys

from collect.importers.cli import forward
from collect.importers.tusimple import import_tusimple

main = forward("tusimple")

if __name__ == "__main__":
    sys.exit(main())

__all__ = ["import_tusimple", "main"]
