"""What reports share: formatting and plot pieces, the listening page and its template, Optuna artifacts, and
ranking statistics over runs tables."""
