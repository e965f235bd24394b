"""The reproduction of the base paper's comparison: the planned runs, the joint search, the finalists, the phase
order (`command`), the report and the listening page."""
