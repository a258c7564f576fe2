"""The α × resolution trade-off measured on a target: ``run.py`` builds and measures the grid,
``report.py`` writes what a user reads (JSON, CSV, plots, Markdown), ``results.py`` holds the
config and the rows both share."""
