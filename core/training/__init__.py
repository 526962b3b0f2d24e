"""From a table to a fitted model: families and search spaces, studies, selection, refit and
the training summary."""
