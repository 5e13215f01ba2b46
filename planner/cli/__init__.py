"""The command line: one module per subcommand, plus ``common`` and ``main``.

The top of the house: parses options, calls one workflow, prints, and maps domain errors
to exit codes (``main``). It never holds rules of the domain (those live in the packages
below), and nothing in ``planner`` imports it.
"""
