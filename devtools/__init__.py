"""Developer tools that are not part of the installed planner (the tiny-model builder)."""
