"""Everything torchtune: model shapes, the recipe registry, config building, command lines,
and the in-job tokenizer hook (a contract: finetune.yaml files name it by import path).

Pure: imports only ``planner.spec``; torchtune itself only inside the in-job hook, never at
import time. Never a subprocess, a terminal library, or the experiment folder.
"""
