"""Optuna sweep over the style-transfer settings on a corpus of song pairs (not yet built)."""

import sys

print("sweep: not yet")
sys.exit(0)
