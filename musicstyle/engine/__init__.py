"""The method: audio in, spectrograms, the random network, the paper's losses, the optimisation, Griffin-Lim, the fair
measures, and one transfer end to end. `fast/` holds the speed machinery (compiled passes), `limit/` the
infinite-filter network. The engine imports only itself, `config`, `errors` and `util/`."""
