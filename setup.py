"""The wheel's package data: the repository's templates/, recipes/ and tasks/ folders.

They stay top-level folders in the repository (the layout people read and edit); the
wheel installs them as planner/_resources/<folder>/, where planner/paths.py finds them
when the package runs outside a checkout. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

RESOURCES = ("templates", "recipes", "tasks")

setup(
    packages=find_packages(include=["planner", "planner.*"]) + [f"planner._resources.{name}" for name in RESOURCES],
    package_dir={f"planner._resources.{name}": name for name in RESOURCES},
    package_data={f"planner._resources.{name}": ["**/*"] for name in RESOURCES},
    exclude_package_data={"": ["__pycache__/*", "**/__pycache__/*", "*.pyc"]},
)
