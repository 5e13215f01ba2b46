"""Analysis of finished experiments: tables, statistics, plots, report, Results block.

Pure modules take results and return tables or text: ``stats`` (Student-t, Wilson,
exact McNemar), ``observe`` (what a folder says, as data; metric-log and config-dump
parsing), ``tables`` (runs, evals, cells, deltas, sweeps, loss), ``report`` (the Results
block and report.html). The edge reads result files (``collect``) and draws PNGs
(``plots``, matplotlib optional); ``pipeline`` is the ``analyze`` workflow that writes
``analysis/``, the Results block and the design log. Never imports ``planner.cli``; pure
modules import no subprocess, terminal library or writer.
"""
