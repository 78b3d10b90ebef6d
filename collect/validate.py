"""Kept for the command users type: `python -m collect.validate DIR` runs `python -m dataset.validate DIR`."""

import sys

from dataset.validate import main

if __name__ == "__main__":
    sys.exit(main())
