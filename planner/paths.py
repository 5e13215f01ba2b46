"""Where the project's own resources live (templates/, recipes/, tasks/).

In a checkout (a clone, or an editable install of one) they are the repository's top-level
folders, so edits take effect at once. An installed wheel carries them as package data in
planner/_resources/ (setup.py maps them there). ``PROJECT_ROOT`` is the folder holding
them: relative evaluation scripts such as ``tasks/capitalization/eval.py`` resolve
against it, and only a checkout also has ``examples/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE_DIR.parent


def _project_root() -> Path:
    # pyproject.toml beside the package tells a checkout from site-packages, where some
    # other distribution might have put a folder called templates/.
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "templates").is_dir():
        return _CHECKOUT
    return _PACKAGE_DIR / "_resources"


PROJECT_ROOT = _project_root()
TEMPLATES_DIR = PROJECT_ROOT / "templates"
RECIPES_DIR = PROJECT_ROOT / "recipes"
TASKS_DIR = PROJECT_ROOT / "tasks"
EXAMPLES_DIR = PROJECT_ROOT / "examples"
