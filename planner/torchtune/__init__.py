"""Everything torchtune: model shapes, the recipe registry, config building, command lines,
the in-job tokenizer hook (a contract: finetune.yaml files name it by import path) and the
in-job gloo launcher of the distributed recipe (``gloo_recipe``: train.sh names it).

Pure: imports only ``planner.spec``; torchtune itself only inside the two in-job modules,
never at import time. Never a subprocess, a terminal library, or the experiment folder.
"""
