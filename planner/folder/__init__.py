"""The experiment folder's files: one typed schema per file, marked blocks, the design log,
the lock and atomic writes.

A package of its own because planning, estimation, submission and status all read and
write the same folder: in any one of those packages the others would import sideways or
upward. Pure modules (``markdown``, ``designlog``, ``journal``, ``compute``) describe the
files; ``atomic`` and ``experiment`` are the thin edge that touches the disk. Imports only
``planner.spec``; never a scheduler, an estimator, a terminal library or a subprocess.
"""
