"""Inputs: the song-pair corpora (built-in, rendered with targets, folders, the paper's two songs), baselines, and
generated test tones."""
