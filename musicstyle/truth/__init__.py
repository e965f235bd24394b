"""Distances to a known right answer (the rendered corpus's targets): the measures, the command that runs a
campaign over them, its validation and its report."""
