"""`python -m collect.importers DATASET ROOT --out DIR ...`: see `collect.importers.cli`."""

import sys

from collect.importers.cli import main

sys.exit(main())
