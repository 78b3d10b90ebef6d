"""Kept for the command users type: `python -m collect.preview DIR` runs `python -m dataset.preview DIR`."""

import sys

from dataset.preview import main

if __name__ == "__main__":
    sys.exit(main())
