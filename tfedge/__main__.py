"""`python -m tfedge <command>`: the same as the `tfedge` console script."""

import sys

from tfedge.cli import run

sys.exit(run())
