"""Estimation: the torchtune log parser, the prior-run scan and its cache, the estimators,
and the ``estimate`` workflow.

Pure modules (``logparse``, ``estimators``, ``plan_estimate``) take text and data; the edge
(``prior_scan``, ``run_folder``, ``priors``) reads run folders and asks sacct; ``pipeline``
is the workflow. Never imports ``planner.status``, ``planner.plan`` or ``planner.cli`` (the
workflow excepted, which composes planning); pure modules never import a subprocess, a
terminal library or anything that writes files.
"""
