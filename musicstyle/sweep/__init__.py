"""The Optuna sweep, one module per concern, in the order a run uses them:

- `plan`      what a run is (settings, corpus, study name, storage, total trials)
- `budget`    resolve the precision once, time a few steps, print the projected time
- `storage`   open the storage, create or resume the study, queue the paper's rows
- `journal`   cut a torn last record off the journal file before it opens
- `trials`    count to an exact total, recover trials left RUNNING by a stopped process
- `quarantine` take out a pair whose file breaks mid-sweep; re-score trials on the remaining pairs
- `retry`     wait out a database restart, re-run the trial it cut short
- `objective` one trial: suggest, run the pairs, report for pruning, return the means
- `workers`   the ask/tell loop, N processes, signals, progress lines
- `report`    trials.csv, pairs.csv, results.md (+ `plots`), re-evaluation
- `cli`       `python sweep.py`'s flags and the whole run
"""
