"""The house's layering, checked over the source (AST), with a test of the check itself.

Every module of ``planner`` has a *role* and lives on a *floor*:

- roles, from the bottom: ``pure`` (data and text in, data and text out), ``edge`` (thin
  modules that touch the filesystem, subprocesses, the environment or the terminal),
  ``workflow`` (one per command, composing engines), ``cli``. A module imports only
  modules of its own role or below.
- floors, for pure and edge modules, from the bottom: the experiment model (``spec``), the
  experiment folder (``folder``), then the engines in :data:`FLOORS` order. A lower floor
  never imports a higher one.
- workflows may call each other only downward, in :data:`WORKFLOWS` order.
- pure modules import no subprocess, terminal or writing module and neither read the
  environment nor write files.

A module not named in :data:`EDGE`, :data:`WORKFLOWS` or ``planner.cli`` is pure: a new
module is held to the strictest rules until it is declared otherwise here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ROLES = ("pure", "edge", "workflow", "cli")

# Bottom first; the top-level ``planner`` modules (``paths``) sit below everything.
FLOORS = ("planner", "spec", "folder", "torchtune", "jobs", "estimate", "status", "plan", "analyze")

EDGE = frozenset({
    "planner.runtime",  # forks workers, pauses the garbage collector
    "planner.spec.local_settings",
    "planner.folder.atomic",
    "planner.folder.experiment",
    "planner.torchtune.gloo_recipe",  # in-job launcher: reads torchrun's RANK/WORLD_SIZE, prints
    "planner.estimate.prior_scan",
    "planner.estimate.scan_cache",
    "planner.estimate.log_reading",
    "planner.estimate.run_folder",
    "planner.estimate.priors",
    "planner.estimate.experiment_index",
    "planner.jobs.executors",
    "planner.jobs.jobrunner",
    "planner.jobs.slurm_query",
    "planner.jobs.slurm",
    "planner.jobs.local",
    "planner.jobs.kinds",
    "planner.jobs.train_supervisor",
    "planner.jobs.fault_injection",
    "planner.plan.fs",
    "planner.plan.verify",
    "planner.plan.prompts",
    "planner.plan.provenance",
    "planner.analyze.collect",
    "planner.analyze.plots",
})

# Bottom first: a workflow may import the ones before it.
WORKFLOWS = (
    "planner.plan.pipeline",
    "planner.status.refresh",
    "planner.status.job_refresh",
    "planner.estimate.pipeline",
    "planner.jobs.submitting",
    "planner.analyze.pipeline",
)

# Modules that run processes, talk to the terminal, write files or read the environment.
IMPURE_MODULES = frozenset({
    "subprocess", "os", "shutil", "tempfile", "filelock", "socket", "getpass", "psutil",
    "submitit", "rich", "click", "prompt_toolkit", "questionary", "sys", "signal", "multiprocessing",
    "concurrent", "pickle",
})
# Calls that write or delete files, whatever object they are called on.
WRITING_CALLS = frozenset({"write_text", "write_bytes", "mkdir", "unlink", "rmdir", "touch", "rmtree", "makedirs", "getenv"})


@dataclass(frozen=True)
class Module:
    """One module of the tree: its dotted name and source."""

    name: str
    source: str
    is_package: bool = False

    @property
    def package(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 2 or (len(parts) == 2 and self.is_package) else "planner"


def role_of(name: str) -> str:
    """The role of a module, by the tables above."""
    if name.startswith("planner.cli") or name.startswith("planner.core"):
        # planner.core holds only the old hook path; nothing may import it (checked below).
        return "cli"
    if name in WORKFLOWS:
        return "workflow"
    if name in EDGE:
        return "edge"
    return "pure"


def floor_of(module: Module) -> int:
    """The floor of a module's package; an unknown package sits on top (and is reported)."""
    return FLOORS.index(module.package) if module.package in FLOORS else len(FLOORS)


def tree_modules() -> list[Module]:
    """Every module of the ``planner`` package in this checkout."""
    out = []
    for path in sorted((ROOT / "planner").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        is_package = rel.name == "__init__"
        parts = rel.parts[:-1] if is_package else rel.parts
        out.append(Module(".".join(parts), path.read_text(), is_package))
    return out


def _imports(module: Module) -> list[tuple[int, str]]:
    """(line, module) for every import, lazy ones included; ``from a import b`` yields a.b too."""
    tree = ast.parse(module.source)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.name.split(".")
                base = base if module.is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out.extend((node.lineno, f"{target}.{a.name}") for a in node.names)
    return out


def violations(modules: list[Module]) -> list[str]:
    """Every broken rule of the house in ``modules``, one line each."""
    by_name = {m.name: m for m in modules}
    problems: list[str] = []
    for module in modules:
        role = role_of(module.name)
        if module.package not in FLOORS and role != "cli":
            problems.append(f"{module.name}: package {module.package!r} has no floor; add it to FLOORS")
        if role == "workflow" and module.name not in WORKFLOWS:
            problems.append(f"{module.name}: a workflow missing from WORKFLOWS")
        for line, target in _imports(module):
            where = f"{module.name}:{line}"
            top = target.split(".")[0]
            if role == "pure" and top in IMPURE_MODULES:
                problems.append(f"{where}: pure module imports {target}")
            if target not in by_name or target == module.name:
                continue
            imported = by_name[target]
            their_role = role_of(target)
            if target.startswith("planner.core"):
                problems.append(f"{where}: imports {target}, kept only for old configs")
            elif ROLES.index(their_role) > ROLES.index(role):
                problems.append(f"{where}: {role} module imports {their_role} module {target}")
            elif role in ("pure", "edge") and floor_of(imported) > floor_of(module):
                problems.append(f"{where}: {module.package} (lower floor) imports {target} (higher floor)")
            elif role == their_role == "workflow" and WORKFLOWS.index(target) > WORKFLOWS.index(module.name):
                problems.append(f"{where}: workflow imports the later workflow {target}")
        if role == "pure":
            problems.extend(_impure_calls(module))
    return problems


def _impure_calls(module: Module) -> list[str]:
    """Writes, deletes, environment reads and writable ``open`` in a pure module."""
    out = []
    for node in ast.walk(ast.parse(module.source)):
        where = f"{module.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr in WRITING_CALLS | {"environ"}:
            out.append(f"{where}: pure module uses .{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
            if any(not isinstance(m, ast.Constant) or set(str(m.value)) & set("wax+") for m in modes):
                out.append(f"{where}: pure module opens a file for writing")
    return out


def test_the_tree_keeps_the_layers() -> None:
    problems = violations(tree_modules())
    assert not problems, "\n".join(problems)


def test_every_package_opens_with_a_docstring_naming_what_it_must_never_import() -> None:
    for module in tree_modules():
        if module.is_package and module.name.count(".") == 1:
            doc = ast.get_docstring(ast.parse(module.source)) or ""
            assert "never" in doc.lower(), f"{module.name}: the docstring says what lives here and what it never imports"


def _synthetic(name: str, source: str) -> list[str]:
    """Violations of the real tree plus one made-up module."""
    return violations([*tree_modules(), Module(name, source)])


def test_the_check_catches_a_pure_module_running_a_subprocess() -> None:
    problems = _synthetic("planner.estimate.bad", "import subprocess\n")
    assert problems == ["planner.estimate.bad:1: pure module imports subprocess"]


def test_the_check_catches_a_pure_module_using_the_terminal_or_environment_or_writing() -> None:
    source = "from rich.console import Console\nimport os\nfrom pathlib import Path\n\nPath('x').write_text('y')\n"
    problems = _synthetic("planner.plan.bad", source)
    assert "planner.plan.bad:1: pure module imports rich.console" in problems
    assert "planner.plan.bad:2: pure module imports os" in problems
    assert "planner.plan.bad:5: pure module uses .write_text" in problems
    assert _synthetic("planner.plan.bad", "f = open('x', 'w')\n") == ["planner.plan.bad:1: pure module opens a file for writing"]
    assert _synthetic("planner.plan.bad", "f = open('x')\n") == []


def test_the_check_catches_a_lower_floor_importing_a_higher_one() -> None:
    problems = _synthetic("planner.spec.bad", "from planner.plan.render import run_dir\n")
    assert problems == ["planner.spec.bad:1: spec (lower floor) imports planner.plan.render (higher floor)"]


def test_the_check_catches_a_pure_module_importing_an_edge_module_or_a_workflow() -> None:
    assert _synthetic("planner.status.bad", "from planner.jobs import slurm_query\n") == [
        "planner.status.bad:1: pure module imports edge module planner.jobs.slurm_query"
    ]
    assert _synthetic("planner.status.bad", "import planner.plan.pipeline\n") == [
        "planner.status.bad:1: pure module imports workflow module planner.plan.pipeline"
    ]


def test_the_check_catches_anything_importing_the_cli() -> None:
    problems = _synthetic("planner.plan.bad", "from planner.cli.common import print_report\n")
    assert problems == ["planner.plan.bad:1: pure module imports cli module planner.cli.common"]
