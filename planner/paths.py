"""Where the project's own resources live (templates/, recipes/, tasks/)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
RECIPES_DIR = PROJECT_ROOT / "recipes"
TASKS_DIR = PROJECT_ROOT / "tasks"
