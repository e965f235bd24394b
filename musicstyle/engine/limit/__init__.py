"""The infinite-filter limit (`--filters inf`): closed-form and series kernels, and a check against finite networks."""
