"""Kept for the command users type: `python -m collect.import_culane ...` =
`python -m collect.importers culane ...`."""

import sys

from collect.importers.cli import forward
from collect.importers.culane import import_culane

main = forward("culane")

if __name__ == "__main__":
    sys.exit(main())

__all__ = ["import_culane", "main"]
