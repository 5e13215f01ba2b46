"""The analysis figures: PNG and SVG, readable, on the metric's scale; the scaling views of seed 000's grid.

The power-law fit and the level helpers are tested as pure functions; the figures on a
hand-made 4 model sizes x 4 learning rates x 3 dataset sizes x 2 seeds grid whose
accuracy follows a known power law.
"""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from analyze_support import analyze_cli, check_png, make_experiment, read_csv, write_result

from planner.analyze.plots import fit_power_law, level_text, parse_params, sorted_levels
from planner.analyze.tables import csv_body

# --- pure parts ------------------------------------------------------------------------------


def test_power_law_fit_recovers_the_exponent_of_noisy_data() -> None:
    rnd = random.Random(7)
    xs = [4e6, 1e7, 6e7, 1.5e8, 4e8]
    ys = [2.5 * x ** -0.2 * math.exp(rnd.gauss(0, 0.01)) for x in xs]
    fit = fit_power_law(xs, ys)
    assert fit is not None and fit.n == 5
    assert fit.b == pytest.approx(-0.2, abs=0.02)
    assert fit.b_low is not None and fit.b_high is not None and fit.b_low < -0.2 < fit.b_high
    mid, lo, hi = fit.predict([1e7])
    assert lo is not None and hi is not None and lo[0] < mid[0] < hi[0]
    assert mid[0] == pytest.approx(2.5 * 1e7 ** -0.2, rel=0.03)


def test_power_law_fit_of_exact_data_and_its_limits() -> None:
    exact = fit_power_law([10, 100, 1000], [1.0, 0.5, 0.25])
    assert exact is not None and exact.b == pytest.approx(math.log(0.5) / math.log(10))
    assert exact.b_high - exact.b_low == pytest.approx(0.0, abs=1e-9)  # type: ignore[operator]
    two = fit_power_law([1, 10], [1.0, 0.1])
    assert two is not None and two.b == pytest.approx(-1.0) and two.b_low is None and two.predict([5])[1] is None
    # Non-positive values cannot go on a log scale: dropped; one distinct x left gives no fit.
    assert fit_power_law([1, 10, 10], [0.0, 0.5, 0.4]) is None


@pytest.mark.parametrize(("label", "params"), [("m4M", 4e6), ("m150M", 1.5e8), ("Llama-3.2-1B-Instruct", 1e9),
                                               ("Qwen2.5-0.5B", 5e8), ("mistral-7b-v0.1", 7e9), ("tiny-llama", None),
                                               ("gpt2-medium", None)])
def test_parameter_counts_are_read_from_model_names(label: str, params: float | None) -> None:
    assert parse_params(label) == params


def test_levels_sort_by_value_and_null_train_samples_reads_all() -> None:
    assert sorted_levels("model", ["m60M", "m4M", "m150M", "m10M"]) == ["m4M", "m10M", "m60M", "m150M"]
    assert sorted_levels("lora_rank", [16, 4, 32]) == [4, 16, 32]
    assert sorted_levels("condition", ["m_rank16", "m_rank4"]) == ["m_rank4", "m_rank16"]
    assert sorted_levels("train_samples", [None, 10000, 1000]) == [1000, 10000, None]
    assert level_text("train_samples", None) == "all" and level_text("learning_rate", 5e-05) == "5e-5"


def test_csv_text_that_starts_like_a_formula_is_quoted_and_numbers_stay_numbers() -> None:
    body = csv_body([["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "\tx", -1.5, -2, "plain", None, "a=b", "x\ny"]])
    assert body.decode() == "'=cmd|' /C calc'!A0,'+1,'-x,'@SUM(A1),'\tx,-1.5,-2,plain,,a=b,\"x\ny\"\n"
    assert csv_body([["\rx"]]) == b'"\'\rx"\n'


# --- seed 000's grid -------------------------------------------------------------------------

PARAMS = {"m4M": 4e6, "m10M": 1e7, "m60M": 6e7, "m150M": 1.5e8}
EXPONENT = -0.15
SCALING = {
    "name": "scaling_grid",
    "question": "How does accuracy scale with model size and data, and which learning rate is best?",
    "models": list(PARAMS),
    "dataset": {"path": "data.json"},
    "factors": {"learning_rate": [5e-7, 5e-6, 5e-5, 5e-4], "train_samples": [1000, 10000, None]},
    "replicates": {"seeds": [1, 2]},
    "base_model_controls": False,
    "controls": {"epochs": 1},
    "evaluation": {"tasks": [{"name": "qa", "script": "tasks/qa/eval.py"}], "epochs": "last"},
}


def _error(model: str, lr: float, samples: int | None) -> float:
    """1 - accuracy: a power law in parameters, smallest at the learning rate that suits the size."""
    best_lr = 5e-6 * PARAMS[model] / 1e7
    return 3.0 * PARAMS[model] ** EXPONENT * (samples or 100000) ** -0.05 * (1 + 0.3 * abs(math.log10(lr / best_lr)))


@pytest.fixture(scope="module")
def scaling(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = tmp_path_factory.mktemp("scaling") / "scaling_grid"
    planned = make_experiment(exp, SCALING)
    assert len(planned.runs) == 96
    for ev in planned.evaluations:
        run = planned.run(ev.run)
        err = _error(run.model, run.factors["learning_rate"], run.factors["train_samples"])
        k = round((1 - err) * 400) + (run.seed or 0) % 2  # seeds a hair apart
        write_result(exp, ev.run, ev.name, [i < k for i in range(400)], epoch=ev.epoch)
    proc = analyze_cli(exp)
    assert proc.returncode == 0, proc.stderr
    return exp


SCALING_FIGURES = ["scaling_params", "scaling_train_samples", "best_learning_rate", "heatmap_model_x_learning_rate",
                   "heatmap_model_x_train_samples", "heatmap_learning_rate_x_train_samples", "sweep_model",
                   "sweep_learning_rate", "sweep_train_samples", "accuracy_by_epoch"]


def test_scaling_figures_exist_as_valid_png_at_200_dpi_and_svg(scaling: Path) -> None:
    from PIL import Image

    plots = scaling / "analysis" / "plots"
    for stem in SCALING_FIGURES:
        png, svg = plots / f"{stem}.png", plots / f"{stem}.svg"
        check_png(png)
        with Image.open(png) as img:
            dpi = img.info.get("dpi", (0, 0))
            assert round(dpi[0]) >= 200, (stem, dpi)
        root = ET.fromstring(svg.read_bytes())
        assert root.tag == "{http://www.w3.org/2000/svg}svg", stem
        assert b"<dc:date>" not in svg.read_bytes()  # no date: the same analysis gives the same bytes
    assert {p.suffix for p in plots.iterdir()} == {".png", ".svg"}
    assert sorted(p.stem for p in plots.glob("*.png")) == sorted(p.stem for p in plots.glob("*.svg"))


def test_scaling_svg_states_the_fitted_exponent_and_the_axis_reads_all_not_empty(scaling: Path) -> None:
    svg = (scaling / "analysis" / "plots" / "scaling_params.svg").read_text(encoding="utf-8")
    # Text is drawn as paths; matplotlib keeps each label's text in a comment.
    assert "train_samples=all: b = " in svg and "train_samples=1000: b = " in svg
    sweeps = read_csv(scaling / "analysis" / "sweeps.csv")
    levels = {r["level"] for r in sweeps if r["factor"] == "train_samples"}
    assert levels == {"1000", "10000", "all"}
    assert all(r["level"] != "" for r in sweeps)
    assert all("train_samples=None" not in r["fixed"] for r in sweeps)


def test_the_fitted_exponent_matches_the_grid_within_tolerance(scaling: Path) -> None:
    # The same fit the figure draws, on the cells' means at the best learning rate per model size.
    cells = read_csv(scaling / "analysis" / "cells.csv")
    for samples in ("1000", "10000", "all"):
        best: dict[str, float] = {}
        for c in cells:
            if f"train_samples={samples}" not in c["factors"]:
                continue
            best[c["model"]] = max(best.get(c["model"], 0.0), float(c["mean"]))
        fit = fit_power_law([PARAMS[m] for m in best], [1 - best[m] for m in best])
        assert fit is not None and fit.b == pytest.approx(EXPONENT, abs=0.03), (samples, fit)


def test_report_shows_the_best_learning_rate_per_model_size(scaling: Path) -> None:
    html = (scaling / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Best learning rate per model size</h2>" in html
    table = html.split("<h2>Best learning rate per model size</h2>", 1)[1].split("</table>", 1)[0]
    # The grid's best rate grows with the model: 5e-6 at 10M, 5e-5 at 60M.
    assert "<td>m10M</td><td>train_samples=1000</td><td>5e-6</td>" in table
    assert "<td>m60M</td><td>train_samples=1000</td><td>5e-5</td>" in table
    assert html.index('id="answer"') < html.index('id="verdicts"') < html.index('id="figures"') < html.index(
        'id="contrasts"')
