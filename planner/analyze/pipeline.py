"""``analyze``: read the run folders, write ``analysis/``, the Results block and the design log.

The run folders are only read. ``analysis/`` is built whole in a temporary sibling
folder and swapped in by rename, so a reader sees the old analysis or the new one,
never a mix. The Results block of experiment_summary.md is inserted once (after the
status tables) and afterwards rewritten in place between its markers; every other byte
of the summary stays.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from planner.folder.experiment import SUMMARY, Experiment
from planner.folder.atomic import atomic_write_text
from planner.analyze import plots
from planner.analyze.collect import JobStates, collect_evals, collect_runs, predicted_seconds
from planner.analyze.observe import FAILED
from planner.analyze.report import RESULTS_BLOCK, insert_results_section, report_html, results_block
from planner.analyze.tables import (Analysis, Early, EpochChoice, Part, Slice, Thresholds, across_slices, assemble,
                                    slice_bounds, slice_cells, slice_tables)
from planner.folder.designlog import DesignLog
from planner.folder.markdown import begin_marker, end_marker, replace_block
from planner.runtime import ChildDied, Forked, can_fork, gc_paused, usable_cpus
from planner.status.tables import EVAL_BLOCK

ANALYSIS_DIR = "analysis"


@dataclass
class Outcome:
    """What one analysis produced."""

    analysis: Analysis
    folder: Path
    files: list[str]
    plots_written: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def missing_or_failed(self) -> list[str]:
        """Planned evaluations without results.json."""
        return self.analysis.missing_or_failed


def build_files(a: Analysis, name: str, question: str, images: dict[str, bytes]) -> dict[str, bytes]:
    """Every file of ``analysis/`` by relative path."""
    files = {f"{table}.csv": data for table, data in a.csv.items()}
    files.update({f"plots/{k}": v for k, v in images.items()})
    files["report.html"] = report_html(a, name, question, images).encode()
    return files


#: Plans from this many evaluations are analysed in slices, one per usable CPU, in forked
#: processes; below it, starting them costs more than it saves (benchmarks/analyze_scale.py).
PARALLEL_ANALYZE_EVALS = 2000


def _slice_stages(exp: Experiment, piece: Slice, states: JobStates, predicted: dict[str, float], metric: str,
                  epoch: EpochChoice, th: Thresholds) -> Iterator[Early | Part]:
    """Read and analyse one slice of the plan: first its cells, then the rest of its part (in a forked worker, or here)."""
    plan = exp.plan
    runs = collect_runs(exp, plan.runs[slice(*piece.runs)], states, predicted)
    evals = collect_evals(exp, plan.evaluations[slice(*piece.evals)], states)
    early = slice_cells(evals, plan, metric, epoch)
    yield early
    # Every slice compares with the base controls: the few evaluations of theirs it does not hold are read too.
    base_names = {r.name for r in plan.base_runs}
    start, stop = piece.evals
    outside = [ev for i, ev in enumerate(plan.evaluations) if ev.run in base_names and not start <= i < stop]
    bases = [o for o in evals if o.evaluation.run in base_names] + collect_evals(exp, outside, states)
    yield slice_tables(early, runs, evals, plan, metric, th, bases)


def _worker_stages(exp: Experiment, piece: Slice, states: JobStates, predicted: dict[str, float], metric: str,
                   epoch: EpochChoice, th: Thresholds) -> Iterator[Early | Part]:
    """A forked worker's stages: its part goes back without the cells its first stage already sent."""
    stages = _slice_stages(exp, piece, states, predicted, metric, epoch, th)
    yield next(stages)
    part = next(stages)
    assert isinstance(part, Part)
    yield replace(part, cells=[], selected=[])


def _slice_part(exp: Experiment, piece: Slice, states: JobStates, predicted: dict[str, float], metric: str,
                epoch: EpochChoice, th: Thresholds) -> Part:
    """One slice's whole part, here."""
    *_, part = _slice_stages(exp, piece, states, predicted, metric, epoch, th)
    assert isinstance(part, Part)
    return part


#: This process's share of the plan against each forked worker's: besides its own stretch it tests the
#: findings and builds the sweeps of every stretch (on two CPUs, what balances the two processes;
#: benchmarks/analyze_scale.py).
PARENT_SHARE = 0.75


def analyze(exp: Experiment, metric: str = "accuracy", epoch: EpochChoice = "last", thresholds: Thresholds | None = None,
            parallel_from: int | None = None, workers: int | None = None) -> Analysis:
    """Read the folders and build every table; large plans in slices over forked workers.

    Each worker reads a stretch of whole conditions (their runs and evaluations) and
    sends back what the whole still needs in two stages: first its cells, then its table
    rows, statuses and CSV bytes. This process analyses the first stretch meanwhile, then
    tests the findings and builds the sweeps over every stretch's cells while the workers
    finish their tables. The files are the same byte for byte as from one process
    (tests/test_analyze_parallel.py); a worker that dies has its stretch done here.
    """
    th = thresholds or Thresholds()
    plan = exp.plan
    threshold = PARALLEL_ANALYZE_EVALS if parallel_from is None else parallel_from
    n = min(workers or usable_cpus(), 8)
    pieces = [Slice((0, len(plan.runs)), (0, len(plan.evaluations)))]
    if len(plan.evaluations) >= threshold and can_fork(n):
        pieces = [p for p in slice_bounds(plan, [PARENT_SHARE] + [1.0] * (n - 1)) if p.runs[0] < p.runs[1]] or pieces
    with gc_paused():
        states, predicted = JobStates(exp), predicted_seconds(exp)
        here = partial(_slice_part, exp, states=states, predicted=predicted, metric=metric, epoch=epoch, th=th)
        if len(pieces) == 1:
            return assemble([here(pieces[0])], plan, metric, epoch, th)
        children: list[Forked[Early | Part]] = [
            Forked(partial(_worker_stages, exp, piece, states, predicted, metric, epoch, th), stages=True)
            for piece in pieces[1:]]
        try:
            mine = here(pieces[0])
            earlies: list[Early] = [Early(mine.cells, mine.selected, mine.best)]
            done_here: dict[int, Part] = {}  # the parts of workers that died, done here instead
            for i, child in enumerate(children, start=1):
                try:
                    early = child.result()
                except ChildDied:
                    done_here[i] = here(pieces[i])
                    early = Early(done_here[i].cells, done_here[i].selected, done_here[i].best)
                assert isinstance(early, Early)
                earlies.append(early)
            whole = across_slices(earlies, plan, metric, th)
            parts = [mine]
            for i, child in enumerate(children, start=1):
                if i not in done_here:
                    try:
                        part = child.result()
                        assert isinstance(part, Part)
                        done_here[i] = replace(part, cells=earlies[i].cells, selected=earlies[i].selected)
                    except ChildDied:
                        done_here[i] = here(pieces[i])
                parts.append(done_here[i])
            return assemble(parts, plan, metric, epoch, th, whole)
        finally:
            for child in children:
                child.close()


def write_folder(target: Path, files: dict[str, bytes]) -> None:
    """Replace ``target`` with a folder holding exactly ``files``: build aside, then rename."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    old: Path | None = None
    try:
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.chmod(tmp, 0o755)
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary_with_results(exp: Experiment, block: str) -> tuple[str | None, str | None]:
    """The summary's new text with the Results block inserted or rewritten, and a warning.

    Returns:
        ``(text, None)``, or ``(None, warning)`` when the summary cannot be read.

    Raises:
        SummaryFormatError: when the block's markers were removed or duplicated by hand.
    """
    path = exp.path / SUMMARY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, f"{path}: not readable ({exc.strerror}); the Results block was not written"
    if begin_marker(RESULTS_BLOCK) in text or end_marker(RESULTS_BLOCK) in text:
        return replace_block(text, RESULTS_BLOCK, block, str(path)), None
    wrapped = f"{begin_marker(RESULTS_BLOCK)}\n{block.rstrip()}\n{end_marker(RESULTS_BLOCK)}"
    return insert_results_section(text, wrapped, end_marker(EVAL_BLOCK)), None


def _log_entries(log: DesignLog, a: Analysis, command: str, now: Callable[[], datetime], files: list[str],
                 plots_note: str) -> None:
    present = a.n_present
    failed = sum(1 for _, _, status in a.statuses if status == FAILED)
    trained = sum(1 for _, is_base, state in a.run_states if not is_base and state == "COMPLETED")
    finetunes = sum(1 for _, is_base, _ in a.run_states if not is_base)
    log.add(now(), "ANALYZE_COLLECT", "Reading run folders and results.json files", command=command,
            result=f"{present} of {a.n_planned} planned evaluations have results.json ({failed} failed, "
                   f"{a.n_planned - present - failed} missing); {trained} of {finetunes} fine-tune runs completed",
            explanation="An evaluation counts when its results.json is there, whoever ran it; the rest are listed "
                        "as incomplete")
    n_sweeps = len(set(a.tables["sweeps"].column("sweep")))
    log.add(now(), "ANALYZE_STATISTICS", f"Summarising {a.metric} over replicate seeds",
            calculation="per condition x task x epoch: mean, sample std, and a 95 % interval from seeds and "
                        "examples (hierarchical bootstrap over predictions.jsonl; else Student t over seeds plus "
                        "the binomial variance, or Wilson for one seed); Wilson 95 % interval per evaluation",
            result=f"{len(a.cell_objs)} cells ({sum(not c.complete for c in a.cell_objs)} incomplete), "
                   f"{n_sweeps} sweeps over {', '.join(a.sweep_factors) or 'no factor'}, "
                   f"{len(a.tables['deltas'].rows)} deltas",
            explanation=f"Headline epoch choice: {a.epoch_choice}")
    th = a.thresholds
    counts = Counter(f.verdict for f in a.findings)
    tested = sum(1 for f in a.findings if f.tested is not None)
    kinds = Counter(f.kind for f in a.findings)
    log.add(now(), "ANALYZE_FINDINGS", "Testing each finding: fine-tunes against base, contrasts between levels, "
            "trends",
            calculation="paired per example (by id, else position, else input and target): exact McNemar for a "
                        "binary metric with one seed, else the paired sign-flip permutation test on per-example "
                        "differences averaged over seeds; 95 % interval by hierarchical bootstrap (seeds, then "
                        "examples)",
            decision=f"{th.correction} correction over the {tested} tested findings at alpha {th.alpha:g}; verdicts "
                     f"need an adjusted p below alpha, then a change >= {th.mild_pct:g} % (improved, mild) or >= "
                     f"{th.severe_pct:g} % (severe) of the base value",
            result=(", ".join(f"{k} {n}" for k, n in kinds.items()) or "no finding") + "; verdicts: "
                   + (", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"),
            explanation="Flags on point estimates fire on noise; a verdict is a tested claim (docs/analysis.md)")
    table = a.tables["runs"]
    mismatched = [r for r, m in zip(table.column("run"), table.column("config_mismatch")) if m is True]
    if mismatched:
        log.add(now(), "ANALYZE_CONFIG", "Comparing each training log's config dump with the plan",
                result=f"{len(mismatched)} run(s) trained with settings other than planned: {', '.join(mismatched[:10])}",
                explanation="See mismatch_detail in analysis/runs.csv; their results answer a different question")
    log.add(now(), "ANALYZE_WRITE", "Writing analysis/ and the Results block of experiment_summary.md",
            result=f"{len(files)} files ({plots_note})",
            explanation="analysis/ is rewritten whole on each run; the run folders are only read")


def run_analysis(exp: Experiment, *, metric: str = "accuracy", epoch: EpochChoice = "last",
                 thresholds: Thresholds | None = None, make_plots: bool = True, command: str = "plan-experiment analyze",
                 now: Callable[[], datetime] = datetime.now, parallel_from: int | None = None,
                 workers: int | None = None) -> Outcome:
    """Analyse ``exp`` and write its analysis files, Results block and design-log entries.

    ``parallel_from`` (evaluations) and ``workers`` override when and over how many
    processes :func:`analyze` slices the work.
    """
    # The collector stays paused throughout: once resumed it would walk every row of the tables at its
    # next pass (tens of milliseconds) and free nothing; matplotlib's few cycles wait until the end.
    with gc_paused():
        a = analyze(exp, metric, epoch, thresholds, parallel_from, workers)
        warnings: list[str] = []
        images: dict[str, bytes] = {}
        if make_plots and plots.available():
            images = plots.all_plots(a)
            plots_note = f"{len(images)} plots"
        elif make_plots:
            plots_note = "no plots: matplotlib is not installed"
            warnings.append("matplotlib is not installed: tables, report and Results block written without plots "
                            "(pip install matplotlib)")
        else:
            plots_note = "no plots: --no-plots"
        files = build_files(a, exp.spec.name, exp.spec.question, images)
        target = exp.path / ANALYSIS_DIR
        log = DesignLog()
        _log_entries(log, a, command, now, sorted(files), plots_note)
        with exp.lock():
            # The summary is checked before anything is written: broken markers stop the run with nothing changed.
            summary, problem = summary_with_results(exp, results_block(a, exp.spec.question))
            write_folder(target, files)
            if summary is not None:
                path = exp.path / SUMMARY
                if summary != path.read_text(encoding="utf-8"):
                    atomic_write_text(path, summary)
            if problem:
                warnings.append(problem)
            with open(exp.path / "design-experiment.log", "a", encoding="utf-8") as handle:
                handle.write(log.render())
    return Outcome(a, target, sorted(files), bool(images), warnings)
