"""The Compute Estimates block names each basis once, with the runs or models it applies to."""

from __future__ import annotations

from planner import paths
from planner.folder.compute import ComputeEstimates, RunEstimate
from planner.plan.render import basis_lines, estimates_block, make_environment

SHARED = "no usable prior run: typical range for a model of this size (preliminary)"


def _run(run: str, model: str, basis: str, job_basis: str) -> RunEstimate:
    return RunEstimate(run=run, model=model, train_seconds=600.0, train_low_seconds=300.0, basis=basis,
                       confidence="preliminary", slurm_time="00:30:00", disk_bytes=1.0, job_seconds=700.0,
                       job_basis=job_basis, time_request="00:30:00", time_source="estimate")


def _estimates(runs: list[RunEstimate]) -> ComputeEstimates:
    return ComputeEstimates(runs=runs, eval_seconds_each=60.0, eval_low_seconds_each=60.0, eval_count=0,
                            eval_basis="none", disk_free_bytes=None, disk_basis="adapters", batch_size_note="as chosen")


def _block_lines(runs: list[RunEstimate]) -> list[str]:
    """The Training section's lines (evaluation and disk have a basis line of their own)."""
    text = estimates_block(_estimates(runs), 1, make_environment(paths.TEMPLATES_DIR))
    return text.split("### Training", 1)[1].split("### Evaluation", 1)[0].strip().splitlines()


def test_three_models_sharing_a_basis_give_one_line() -> None:
    models = ["Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct", "Qwen2.5-7B-Instruct"]
    runs = [_run(f"{m}_rank{r}", f"/models/{m}", SHARED, f"start-up of {m}; saves of {m}") for m in models for r in (4, 64)]
    lines = _block_lines(runs)
    basis = [line for line in lines if line.startswith("- **Basis")]
    assert basis == [f"- **Basis:** {SHARED}"]  # every run shares it: no list of runs
    job = [line for line in lines if line.startswith("- **Job wall time basis")]
    # One per model, named by the model (each covers all of that model's runs).
    assert job == [f"- **Job wall time basis ({m}):** start-up of {m}; saves of {m}" for m in models]
    assert max(len(line) for line in lines) < 300


def test_a_basis_of_some_runs_names_them_concisely() -> None:
    named = [(f"m_rank{r}", "m", "A" if r < 64 else "B") for r in (1, 2, 4, 8, 16, 64)]
    assert basis_lines(named) == [("m_rank1, m_rank2, m_rank4 and 2 more runs", "A"), ("m_rank64", "B")]
    assert basis_lines([("a", "m", "A"), ("b", "n", "A"), ("c", "o", "B")]) == [("m, n", "A"), ("o", "B")]
    assert basis_lines([("a", "m", "A"), ("b", "m", "")]) == [("a", "A")]  # an empty basis is no line
    assert basis_lines([]) == []
