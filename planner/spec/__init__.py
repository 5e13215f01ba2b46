"""The experiment model: the spec, the knob table, local settings, runs, errors, units, Slurm states.

The bottom of the house; every other package imports it. Pure modules only, apart from
``local_settings`` (reads the environment and the settings file). Never imports another
``planner`` package, a subprocess, a terminal library (rich, click) or anything that writes
files.
"""
