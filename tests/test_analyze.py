"""``plan-experiment analyze`` on hand-made results: statistics, sweeps, forgetting, files, errors.

No training here: results.json files are written the way a person running evaluations by
hand leaves them, under an experiment.yaml that is the plan. The demo tests
(test_local_executor, test_slurm_submit) run the same command on real runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from analyze_support import (
    SUMMARY_HEAD, analyze_cli, check_png, make_experiment, read_csv, results_block, tree_bytes, write_result,
)
from submit_support import copy_example, plan

from planner.analyze.stats import mcnemar_exact, summarize, t_quantile, wilson
from planner.analyze.findings import Finding, MetricInfo, Policy, verdict
from planner.analyze.inference import Tested as Claim

# --- acceptance 1: the arithmetic ------------------------------------------------------


def test_two_replicates_give_mean_std_and_student_t_interval() -> None:
    s = summarize([0.5, 0.7])
    assert s.n == 2 and s.mean == pytest.approx(0.6)
    assert s.std == pytest.approx(0.1414, abs=5e-5)
    assert s.ci_low == pytest.approx(-0.671, abs=5e-4) and s.ci_high == pytest.approx(1.871, abs=5e-4)


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (2, 4.3027), (5, 2.5706), (30, 2.0423), (1000, 1.9623)])
def test_t_quantile_matches_the_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_one_replicate_has_no_spread_and_no_interval() -> None:
    s = summarize([0.3])
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (0.3, None, None, None)


def test_wilson_interval_of_75_in_100() -> None:
    lo, hi = wilson(75, 100)
    assert lo == pytest.approx(0.657, abs=5e-4) and hi == pytest.approx(0.825, abs=5e-4)


@pytest.mark.parametrize("n", [1, 2, 10, 50, 1000])
def test_wilson_stays_inside_0_1_at_none_and_all_correct(n: int) -> None:
    for k in (0, n):
        lo, hi = wilson(k, n)
        assert 0.0 <= lo < hi <= 1.0
    assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == pytest.approx(1.0)


def test_exact_mcnemar_of_10_against_2_discordant_pairs() -> None:
    assert mcnemar_exact(10, 2) == pytest.approx(0.0386, abs=5e-5)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0


# --- acceptance 2: seed 000's grid -----------------------------------------------------

GRID = {
    "name": "scaling_grid",
    "question": "How do model size, learning rate and dataset size interact?",
    "models": ["4M", "10M", "60M", "150M"],
    "dataset": {"path": "data.json"},
    "factors": {"learning_rate": [5e-7, 5e-6, 5e-5, 5e-4], "train_samples": [1000, 10000, 100000]},
    "replicates": {"seeds": [1, 2]},
    "base_model_controls": False,
    "controls": {"epochs": 1},
    "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"}], "epochs": "last"},
}


@pytest.fixture()
def grid(tmp_path: Path) -> Path:
    exp = tmp_path / "scaling_grid"
    planned = make_experiment(exp, GRID)
    assert len(planned.runs) == 96 and len(planned.evaluations) == 96
    for i, ev in enumerate(planned.evaluations):
        write_result(exp, ev.run, ev.name, accuracy=(i % 37) / 100, epoch=ev.epoch)
    return exp


def _sweeps(exp: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for row in read_csv(exp / "analysis" / "sweeps.csv"):
        out.setdefault(row["factor"], {}).setdefault(row["sweep"], []).append(row)
    return out


def test_seed_000_grid_gives_12_12_and_16_complete_sweeps(grid: Path) -> None:
    proc = analyze_cli(grid, "--no-plots")
    assert proc.returncode == 0, proc.stderr
    sweeps = _sweeps(grid)
    assert {f: len(s) for f, s in sweeps.items()} == {"model": 12, "learning_rate": 12, "train_samples": 16}
    assert {f: {len(rows) for rows in s.values()} for f, s in sweeps.items()} == {
        "model": {4}, "learning_rate": {4}, "train_samples": {3}}
    assert all(r["sweep_complete"] == "True" for s in sweeps.values() for rows in s.values() for r in rows)
    cells = read_csv(grid / "analysis" / "cells.csv")
    assert len(cells) == 48 and {c["n_seeds"] for c in cells} == {"2"}
    assert all(c["complete"] == "True" for c in cells)


def test_deleting_one_results_json_marks_exactly_one_cell_incomplete(grid: Path) -> None:
    gone = grid / "60M_lr5e-5_n10000_seed2" / "eval" / "qa_epoch0" / "results.json"
    gone.unlink()
    proc = analyze_cli(grid, "--no-plots")
    assert proc.returncode == 0, proc.stderr
    cells = read_csv(grid / "analysis" / "cells.csv")
    incomplete = [c for c in cells if c["complete"] == "False"]
    assert [(c["condition"], c["n_seeds"], c["missing_runs"]) for c in incomplete] == [
        ("60M_lr5e-5_n10000", "1", "60M_lr5e-5_n10000_seed2")]
    # Each factor has exactly one sweep through that cell, and only that sweep is incomplete.
    sweeps = _sweeps(grid)
    assert {f: sum(rows[0]["sweep_complete"] == "False" for rows in s.values()) for f, s in sweeps.items()} == {
        "model": 1, "learning_rate": 1, "train_samples": 1}
    evals = read_csv(grid / "analysis" / "evals.csv")
    assert Counter(e["status"] for e in evals if e["metric"] == "accuracy") == {"present": 95, "missing": 1}
    summary = (grid / "experiment_summary.md").read_text(encoding="utf-8")
    assert "`60M_lr5e-5_n10000_seed2/qa_epoch0: missing`" in results_block(summary)
    strict = analyze_cli(grid, "--no-plots", "--strict")
    assert strict.returncode == 6
    assert strict.stderr.splitlines()[-1].startswith("error: --strict: 1 planned evaluation(s) missing or failed: "
                                                     "60M_lr5e-5_n10000_seed2/qa_epoch0")


# --- acceptance 4: forgetting ----------------------------------------------------------

FORGET = {
    "name": "forgetting",
    "question": "Does fine-tuning keep general ability?",
    "models": ["m"],
    "dataset": {"path": "data.json"},
    "factors": {"lora_rank": [8, 16, 32]},
    "replicates": {"seeds": [42]},
    "base_model_controls": True,
    "controls": {"epochs": 1},
    "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"}], "epochs": "last"},
}


def test_only_a_significant_drop_is_flagged_and_the_noise_is_no_detectable_change(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    base = [i < 100 for i in range(200)]  # 100 of 200 right
    write_result(exp, "m_base", "qa", base)
    # rank 8: 92 right (-8 %): the base's first 100 minus 10, plus 2 it got wrong (McNemar p = 0.0386).
    write_result(exp, "m_rank8", "qa_epoch0", [(i < 90) or (100 <= i < 102) for i in range(200)], epoch=0)
    # rank 16: 73 right (-27 %): 27 discordant pairs, all one way.
    write_result(exp, "m_rank16", "qa_epoch0", [i < 73 for i in range(200)], epoch=0)
    # rank 32: 103 right (+3 %): 3 discordant pairs.
    write_result(exp, "m_rank32", "qa_epoch0", [i < 103 for i in range(200)], epoch=0)
    proc = analyze_cli(exp, "--no-plots")
    assert proc.returncode == 0, proc.stderr
    deltas = {d["run"]: d for d in read_csv(exp / "analysis" / "deltas.csv")}
    # Holm over the table's three tests: 0.0386 x 2 is not below 0.05; the -27 % drop is.
    assert {r: (d["rel_delta_pct"], d["flag"]) for r, d in deltas.items()} == {
        "m_rank8": ("-8.0", "no detectable change"), "m_rank16": ("-27.0", "severe"),
        "m_rank32": ("3.0", "no detectable change")}
    r8 = deltas["m_rank8"]
    assert (r8["n_pairs"], r8["base_only_correct"], r8["finetune_only_correct"]) == ("200", "10", "2")
    assert r8["test"] == "exact McNemar"
    assert float(r8["p"]) == pytest.approx(0.0386, abs=5e-5)
    assert float(r8["p_adjusted"]) == pytest.approx(2 * 0.038574, abs=5e-5)
    findings = read_csv(exp / "analysis" / "findings.csv")
    # 3 against base, 3 pairwise rank contrasts and one trend over the ranks: one family of 7.
    assert Counter(f["kind"] for f in findings) == {"vs base": 3, "contrast": 3, "trend": 1}
    by = {(f["kind"], f["a"], f["b"]): f for f in findings}
    r16 = by[("vs base", "m_rank16", "m_base")]
    assert r16["verdict"] == "severe" and float(r16["effect"]) == pytest.approx(-0.135)
    assert float(r16["ci_low"]) < -0.135 < float(r16["ci_high"]) < 0
    assert by[("vs base", "m_rank8", "m_base")]["verdict"] == "no detectable change"
    block = results_block((exp / "experiment_summary.md").read_text(encoding="utf-8"))
    assert block.startswith("<!-- plan-experiment:begin results -->\n**Question:**")
    assert "| m_rank16 | qa | 0 | 0.365 [" in block and "| severe |" in block
    assert "fine-tuning against the base model (3): no detectable change 2, severe 1:" in block
    assert ("`m_rank16` vs `m_base` (`qa`, epoch last (0)): 0.365 vs 0.500, Δ -0.135 [95 % CI " in block)
    # The design log gets the analysis in seed 002's format.
    log = (exp / "design-experiment.log").read_text(encoding="utf-8")
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ANALYZE_FINDINGS: Testing each finding", log, re.M)
    assert "Decision: holm correction over the 7 tested findings at alpha 0.05" in log
    assert [ln.split("] ")[1].split(":")[0] for ln in log.splitlines() if ln.startswith("[")] == [
        "ANALYZE_COLLECT", "ANALYZE_STATISTICS", "ANALYZE_FINDINGS", "ANALYZE_WRITE"]


def _finding(effect: float, base: float, p_adj: float, higher: bool = True) -> Finding:
    tested = Claim(effect, effect - 0.1, effect + 0.1, "seeds x examples", p_adj, "t", 80, 1)
    return Finding("vs base", "fine-tuning", "mt", "last", "ft", "base", "", base + effect, base, tested, None,
                   MetricInfo("score", higher), p_adj)


def test_seed_004_changes_are_mild_and_severe_only_when_significant() -> None:
    policy = Policy()
    assert verdict(_finding(2.4430 - 2.6565, 2.6565, 0.01), policy) == "mild"  # -8.0 %
    assert verdict(_finding(1.4924 - 2.0357, 2.0357, 0.01), policy) == "severe"  # -26.7 %
    assert verdict(_finding(1.4924 - 2.0357, 2.0357, 0.2), policy) == "no detectable change"
    assert verdict(_finding(0.1, 0.5, 0.01), policy) == "improved"
    assert verdict(_finding(0.01, 0.5, 0.01), policy) == "negligible"
    # Lower is better (a loss): a drop is an improvement, a rise is forgetting.
    assert verdict(_finding(-0.44, 1.28, 0.001, higher=False), policy) == "improved"
    assert verdict(_finding(+0.44, 1.28, 0.001, higher=False), policy) == "severe"


def test_mcnemar_is_refused_with_a_reason_when_splits_or_counts_differ(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    write_result(exp, "m_base", "qa", [i < 50 for i in range(100)])
    write_result(exp, "m_rank8", "qa_epoch0", [i < 40 for i in range(90)], epoch=0)
    write_result(exp, "m_rank16", "qa_epoch0", [i < 40 for i in range(100)], epoch=0, split="validation")
    write_result(exp, "m_rank32", "qa_epoch0", [i < 40 for i in range(100)], epoch=0, predictions=False)
    assert analyze_cli(exp, "--no-plots").returncode == 0
    notes = {d["run"]: (d["test_note"], d["p"], d["flag"]) for d in read_csv(exp / "analysis" / "deltas.csv")}
    # No test, no claim: a refused comparison carries no flag.
    assert notes == {
        "m_rank8": ("refused: counts differ (90 vs base 100)", "", ""),
        "m_rank16": ("refused: splits differ (validation vs base test)", "", ""),
        "m_rank32": ("refused: no per-example outcomes (predictions.jsonl)", "", ""),
    }


# --- acceptance 5: configured vs actual settings ---------------------------------------

CONFIG_DUMP = """plan-experiment: training {run} (job 7) on node1
Running LoRAFinetuneRecipeSingleDevice with resolved config:

batch_size: 8
dataset:
  _component_: torchtune.datasets.instruct_dataset
  field: train
  split: {split}
epochs: 1
model:
  _component_: torchtune.models.llama2.lora_llama2
  lora_alpha: 16.0
  lora_rank: 8
optimizer:
  _component_: torch.optim.AdamW
  lr: 0.0001
seed: 42

INFO:torchtune.utils._logging:Model is initialized with precision torch.float32.
1|1|Loss: 2.5: 100%|##########| 2/2 [00:01<00:00,  1.50it/s]
"""


def test_a_run_whose_log_config_differs_from_its_plan_is_marked_config_mismatch(tmp_path: Path) -> None:
    spec = {**FORGET, "factors": {"train_samples": [25, None]}, "base_model_controls": False,
            "controls": {"epochs": 1, "batch_size": 8, "lora_rank": 8, "learning_rate": 1e-4}}
    exp = tmp_path / "sampling"
    planned = make_experiment(exp, spec)
    sampled, full = (r.name for r in planned.finetune_runs)
    # Seed 004's bug: 25 % planned (train[:25]), the whole train split trained.
    for run in (sampled, full):
        (exp / run).mkdir()
        (exp / run / "slurm-7.out").write_text(CONFIG_DUMP.format(run=run, split="train"), encoding="utf-8")
        (exp / run / "logs").mkdir()
        (exp / run / "logs" / "log_1700000000.txt").write_text(
            "Step 1 | loss:2.7 lr:0.0001 tokens_per_second_per_gpu:100.0 \n"
            "Step 2 | loss:2.5 lr:0.0001 tokens_per_second_per_gpu:120.0 \n", encoding="utf-8")
    assert analyze_cli(exp, "--no-plots").returncode == 0
    runs = {r["run"]: r for r in read_csv(exp / "analysis" / "runs.csv")}
    assert (runs[sampled]["config_mismatch"], runs[sampled]["mismatch_detail"]) == (
        "True", "train_samples: planned train[:25], log train")
    assert (runs[full]["config_mismatch"], runs[full]["mismatch_detail"]) == ("False", "")
    assert (runs[full]["actual_steps"], runs[full]["final_loss"], runs[full]["min_loss"]) == ("2", "2.5", "2.5")
    log = (exp / "design-experiment.log").read_text(encoding="utf-8")
    assert f"ANALYZE_CONFIG: Comparing each training log's config dump with the plan\nResult: 1 run(s) trained with settings other than planned: {sampled}" in log


# --- the files, the summary block, bad input -------------------------------------------


def test_retried_run_uses_the_newest_metric_log(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, {**FORGET, "factors": {"lora_rank": [8]}, "base_model_controls": False})
    logs = exp / "m_rank8" / "logs"
    logs.mkdir(parents=True)
    (logs / "log_1700000000.txt").write_text("Step 1 | loss:9.0 lr:0.1 \nStep 2 | loss:8.0 lr:0.1 \n")
    (logs / "log_1700000500.txt").write_text("Step 1 | loss:3.0 lr:0.1 tokens_per_second_per_gpu:10 \n")
    assert analyze_cli(exp, "--no-plots").returncode == 0
    assert [(r["run"], r["step"], r["loss"]) for r in read_csv(exp / "analysis" / "loss.csv")] == [("m_rank8", "1", "3.0")]


def test_results_block_is_inserted_once_rewritten_in_place_and_every_other_byte_kept(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    write_result(exp, "m_base", "qa", [i < 50 for i in range(100)])
    write_result(exp, "m_rank8", "qa_epoch0", [i < 40 for i in range(100)], epoch=0)
    original = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    assert analyze_cli(exp).returncode == 0
    first = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    block = results_block(first)
    assert first.replace("\n## Results\n" + block + "\n", "", 1) == original
    assert first.index(block) > first.index("<!-- plan-experiment:end eval-status -->") > 0
    # A user edits outside the block; a new result changes the block only.
    edited = first + "\n- another note after the analysis\n"
    (exp / "experiment_summary.md").write_text(edited, encoding="utf-8")
    write_result(exp, "m_rank16", "qa_epoch0", [i < 45 for i in range(100)], epoch=0)
    assert analyze_cli(exp).returncode == 0
    second = (exp / "experiment_summary.md").read_text(encoding="utf-8")
    assert second.count("## Results") == 1 and "| m_rank16 | qa | 0 | 0.450" in second
    assert second.replace(results_block(second), block) == edited


def test_second_analyze_gives_byte_identical_files(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, {**FORGET, "replicates": {"seeds": [1, 2]}})
    for i, run in enumerate(["m_rank8_seed1", "m_rank8_seed2", "m_rank16_seed1", "m_rank16_seed2", "m_rank32_seed1"]):
        write_result(exp, run, "qa_epoch0", [j < 40 + 3 * i for j in range(100)], epoch=0)
    write_result(exp, "m_base", "qa", [j < 50 for j in range(100)])
    for seed, run in enumerate(["m_rank8_seed1", "m_rank8_seed2"]):
        (exp / run / "logs").mkdir()
        (exp / run / "logs" / "log_1700000000.txt").write_text(
            "".join(f"Step {s} | loss:{3.0 - 0.1 * s + 0.05 * seed} lr:0.001 tokens_per_second_per_gpu:99.5 \n"
                    for s in range(1, 21)), encoding="utf-8")
    assert analyze_cli(exp).returncode == 0
    first, summary = tree_bytes(exp / "analysis"), (exp / "experiment_summary.md").read_bytes()
    assert {"plots/deltas.png", "plots/sweep_lora_rank.png", "plots/accuracy_by_epoch.png", "plots/loss_m.png",
            "report.html"} <= set(first)
    for name in first:
        if name.endswith(".png"):
            check_png(exp / "analysis" / name)
    assert analyze_cli(exp).returncode == 0
    assert tree_bytes(exp / "analysis") == first and (exp / "experiment_summary.md").read_bytes() == summary
    cells = {c["condition"]: c for c in read_csv(exp / "analysis" / "cells.csv")}
    assert (cells["m_rank8"]["n_seeds"], cells["m_rank8"]["mean"], cells["m_rank32"]["complete"]) == ("2", "0.415", "False")


def test_no_plots_and_no_matplotlib_still_write_tables_report_and_block(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    write_result(exp, "m_base", "qa", [i < 50 for i in range(100)])
    write_result(exp, "m_rank8", "qa_epoch0", [i < 40 for i in range(100)], epoch=0)
    assert analyze_cli(exp, "--no-plots").returncode == 0
    assert not (exp / "analysis" / "plots").exists() and "<img" not in (exp / "analysis" / "report.html").read_text()
    # A matplotlib that cannot be imported, as on a login node without it.
    blocker = tmp_path / "no_matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), *sys.path])}
    (exp / "experiment_summary.md").write_text(SUMMARY_HEAD.format(name="forgetting"), encoding="utf-8")
    proc = analyze_cli(exp, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning: matplotlib is not installed" in proc.stderr
    assert sorted(p.name for p in (exp / "analysis").iterdir()) == [
        "cells.csv", "deltas.csv", "evals.csv", "findings.csv", "loss.csv", "report.html", "runs.csv", "sweeps.csv"]
    assert "| m_rank8 | qa | 0 | 0.400 [0.309, 0.500] (1 seed, test set only) |" in results_block((exp / "experiment_summary.md").read_text())


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "results.json is not valid JSON"),
    ("[1, 2]", "results.json holds a list, not an object"),
])
def test_a_broken_results_json_is_a_one_line_error_and_nothing_is_written(tmp_path: Path, content: str,
                                                                        problem: str) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    write_result(exp, "m_base", "qa", [i < 50 for i in range(100)])
    bad = write_result(exp, "m_rank8", "qa_epoch0", [i < 40 for i in range(100)], epoch=0)
    bad.write_text(content)
    summary = (exp / "experiment_summary.md").read_bytes()
    proc = analyze_cli(exp)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {bad}: {problem}") and "rerun the evaluation" in proc.stderr
    assert not (exp / "analysis").exists() and (exp / "experiment_summary.md").read_bytes() == summary


def test_bad_options_and_folders_are_one_line_errors(tmp_path: Path) -> None:
    proc = analyze_cli(tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "no experiment.yaml" in proc.stderr
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    proc = analyze_cli(exp, "--mild-drop", "30", "--severe-drop", "20")
    assert proc.returncode == 2 and proc.stderr == ("error: --mild-drop 30 and --severe-drop 20: need 0 < mild < "
                                                    "severe, e.g. --mild-drop 5 --severe-drop 20\n")


def test_json_output_on_a_planned_experiment_with_status_after(tmp_path: Path) -> None:
    """A folder planned by `new` (real summary, real status blocks); results written by hand."""
    spec_path = copy_example(tmp_path / "src", one_epoch=False)
    exp = plan(spec_path, tmp_path / "out")
    shutil.rmtree(exp / "analysis", ignore_errors=True)
    for run, values in (("tiny-llama-cap_rank4", (0.4, 0.6)), ("tiny-llama-cap_rank16", (0.7, 0.5))):
        for epoch, acc in enumerate(values):
            for task in ("capitalization", "retention"):
                write_result(exp, run, f"{task}_epoch{epoch}", accuracy=acc, n=50, task=task, epoch=epoch)
    for task in ("capitalization", "retention"):
        write_result(exp, "tiny-llama-cap_base", task, accuracy=0.5, n=50, task=task)
    proc = analyze_cli(exp, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    head = {(r["condition"], r["task"]): r for r in out["headline"]}
    assert head[("tiny-llama-cap_rank16", "retention")]["best_vs_last"] == (
        "best epoch 0: 0.700 (selected on the test split); last epoch 1: 0.500")
    # Without predictions.jsonl nothing can be paired: no claim is made, and the reason is given.
    assert out["flags"] == {"untested": 4}
    assert {f["note"] for f in out["findings"]} == {"untested: no per-example outcomes (predictions.jsonl)"}
    assert (out["alpha"], out["correction"]) == (0.05, "holm")
    block = results_block((exp / "experiment_summary.md").read_text(encoding="utf-8"))
    status = subprocess.run([sys.executable, "-m", "planner.cli.main", "status", str(exp)],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert results_block((exp / "experiment_summary.md").read_text(encoding="utf-8")) == block


BEST = {
    "name": "best", "question": "Which epoch?", "models": ["m"], "dataset": {"path": "data.json"},
    "factors": {"lora_rank": [4, 16]}, "replicates": {"seeds": [42]}, "base_model_controls": False,
    "controls": {"epochs": 3},
    "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"},
                             {"name": "qa_val", "script": "tasks/qa/eval.py", "split": "validation"}],
                   "epochs": "all"},
}


def test_best_epoch_is_chosen_on_the_validation_split_and_reported_on_the_test_split(tmp_path: Path) -> None:
    exp = tmp_path / "best"
    make_experiment(exp, BEST)
    # Validation says epoch 1 for both ranks; the test split alone would pick epoch 2 (rank 4) and 0 (rank 16).
    val = {"m_rank4": (0.5, 0.8, 0.6), "m_rank16": (0.4, 0.9, 0.3)}
    test = {"m_rank4": (0.2, 0.5, 0.9), "m_rank16": (0.9, 0.6, 0.1)}
    for run in val:
        for e in range(3):
            write_result(exp, run, f"qa_val_epoch{e}", accuracy=val[run][e], n=50, task="qa_val", epoch=e,
                         split="validation")
            write_result(exp, run, f"qa_epoch{e}", accuracy=test[run][e], n=50, task="qa", epoch=e)
    proc = analyze_cli(exp, "--epoch", "best", "--json", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    head = {(r["condition"], r["task"]): r["epoch"] for r in json.loads(proc.stdout)["headline"]}
    assert head == {("m_rank4", "qa"): 1, ("m_rank16", "qa"): 1, ("m_rank4", "qa_val"): 1, ("m_rank16", "qa_val"): 1}


def test_best_epoch_without_a_validation_task_is_a_one_line_error(tmp_path: Path) -> None:
    exp = tmp_path / "forgetting"
    make_experiment(exp, FORGET)
    write_result(exp, "m_base", "qa", [i < 50 for i in range(100)])
    proc = analyze_cli(exp, "--epoch", "best", "--no-plots")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --epoch best chooses the epoch on a validation split, and no task")
    assert "Traceback" not in proc.stderr and not (exp / "analysis").exists()
