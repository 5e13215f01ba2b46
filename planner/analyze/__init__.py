"""Analysis of finished experiments.

Pure modules take results and return tables; a thin edge reads result files. Never imports
``planner.cli``; pure modules import no subprocess, terminal library or writer.
"""
