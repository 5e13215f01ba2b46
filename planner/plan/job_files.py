"""What each job runs: torchtune configs and commands for training, eval configs for tasks.

Every torchtune detail is behind planner.torchtune.recipes; this module only walks the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.torchtune import recipes
from planner.plan.render import JobFiles, eval_dir, run_dir
from planner.spec.resources import Resources
from planner.spec.runs import Plan, Run


@dataclass(frozen=True)
class JobEnvironment:
    """Where the jobs run: shell setup lines and the planner's own bin folder as fallback."""

    setup_lines: list[str]
    fallback_bin_dir: str
    python: str = "python"
    cpu_only: bool = False  # slurm.cpu_only: every "GPU" of the spec is a CPU process
    planner_python: str = ""  # the interpreter that planned (a job's refresh of the summary runs it)


def device_of(gpus: int, cpu_only: bool = False) -> str:
    """``gpus: 0`` plans CPU jobs (the tiny demo model), as does a cluster without GPUs; otherwise CUDA."""
    return "cpu" if gpus == 0 or cpu_only else "cuda"


def recipe_files_of(plan: Plan, resources: Resources) -> dict[str, str]:
    """Each fine-tune run's recipe config, as ``recipes/<file>`` (what the summary and the log name)."""
    gpus, nodes = max(plan.spec.resources.gpus, 1), plan.spec.resources.nodes
    per_model = {m: f"recipes/{recipes.recipe_file_for(resources.models[m].shape, gpus, nodes)}"
                 for m in {r.model for r in plan.finetune_runs}}
    return {r.name: per_model[r.model] for r in plan.finetune_runs}


def build_job_files(plan: Plan, resources: Resources, exp_dir: str, recipe_texts: dict[str, str], env: JobEnvironment,
                    runs: Sequence[Run] | None = None) -> JobFiles:
    """Torchtune configs, training commands, eval configs and eval commands of a plan's ``runs`` (default: all).

    A large plan builds them chunk by chunk, in the processes that render each chunk's files.
    """
    spec = plan.spec
    gpus, nodes = spec.resources.gpus, spec.resources.nodes
    device = device_of(gpus, env.cpu_only)
    configs, argv, shell, eval_cfgs, eval_argv = {}, {}, {}, {}, {}
    for run in plan.runs if runs is None else runs:
        model = resources.models[run.model]
        rdir = run_dir(exp_dir, run)
        # Every knob of the run goes to the config builder, which refuses one it does not
        # place; no prompt node for plain input.
        settings = {**run.settings, "device": device, "dtype": "fp32" if device == "cpu" else "bf16"}
        if settings.get("prompt") == "{input}":
            settings["prompt"] = None
        recipe_file = recipes.recipe_file_for(model.shape, max(gpus, 1), nodes)
        cfg = recipes.finetune_config(
            recipe_text=recipe_texts[recipe_file],
            shape=model.shape,
            model_dir=model.path,
            checkpoint_files=recipes.checkpoint_files(model.files),
            tokenizer_path=recipes.tokenizer_path(model.shape, model.path, model.files),
            run_dir=rdir,
            dataset_path=resources.dataset.path,
            settings=settings,
            gpus=max(gpus, 1),
            nodes=nodes,
        )
        if not run.is_base:
            configs[run.name] = cfg
            argv[run.name] = recipes.training_argv(f"{rdir}/finetune.yaml", max(gpus, 1), nodes, device)
            shell[run.name] = recipes.training_command(f"{rdir}/finetune.yaml", max(gpus, 1), nodes, device)
        for ev in plan.evaluations_of(run.name):
            task = resources.tasks[ev.task]
            task_spec = next(t for t in spec.evaluation.tasks if t.name == ev.task)
            edir = eval_dir(exp_dir, ev)
            eval_cfgs[ev.key] = recipes.eval_config(
                task=ev.task,
                run=run.name,
                epoch=ev.epoch,
                finetune_cfg=cfg,
                adapter_dir=None if ev.epoch is None else f"{rdir}/epoch_{ev.epoch}",
                dataset_path=task.dataset,
                split=task.split,
                system_prompt=run.settings["system_prompt"],
                prompt=settings["prompt"],
                results_path=f"{edir}/results.json",
                max_new_tokens=task_spec.max_new_tokens,
                limit=task_spec.limit,
                device=device,
            )
            eval_argv[ev.key] = [env.python, task.script, "--config", f"{edir}/eval_config.yaml"]
    return JobFiles(
        finetune_configs=configs,
        training_argv=argv,
        training_shell=shell,
        eval_configs=eval_cfgs,
        eval_argv=eval_argv,
        setup_lines=env.setup_lines,
        fallback_bin_dir=env.fallback_bin_dir,
        python=env.python,
        planner_python=env.planner_python,
        # Jobs read local files only; offline mode stops the datasets library from asking a hub.
        env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
    )
