"""Small helpers every layer uses: atomic file writes (io), the machine line and code version (machine), progress
lines (progress), value parsing (values), safe names (names). They import nothing above them."""
