"""Old import paths kept for files written before the domain layout.

``finetune.yaml`` files planned by earlier versions name the in-job tokenizer hook
``planner.core.recipes.prompted_tokenizer``; torchtune imports it by that path on the
compute node. Only that hook lives here, as a re-export. New code imports
``planner.torchtune``; nothing in ``planner`` ever imports this package, and it never
imports anything but that hook.
"""
