"""The experiment model: the spec, the knob table, local settings, runs, errors, units, Slurm states.

Also what Slurm accepts in each ``#SBATCH`` value (``slurm_values``) and how a command
printed for people to paste is quoted (``commands``): both are checked where values enter.

The bottom of the house; every other package imports it. Pure modules only, apart from
``local_settings`` (reads the environment and the settings file). Never imports another
``planner`` package, a subprocess, a terminal library (rich, click) or anything that writes
files.
"""
