"""The α × resolution trade-off measured on a target: ``run.py`` runs the grid, ``report.py``
writes what a user reads (JSON, CSV, plots, Markdown)."""
