"""`python sweep.py --trials 200`: the Optuna sweep over a corpus of song pairs (see musicstyle/sweep/)."""

import sys

from musicstyle.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
