"""`python sweep.py --trials 200`: the Optuna sweep over a corpus of song pairs (see musicstyle.study)."""

import sys

from musicstyle.study import main

if __name__ == "__main__":
    sys.exit(main())
