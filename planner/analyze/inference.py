"""Tested claims: paired tests, intervals from seeds and examples, multiple-comparison control. Pure.

Every comparison the analysis reports (a fine-tune against its base model, one level of a
factor against another) is a *paired* comparison: both sides were evaluated on the same
examples, and a fine-tune's seeds were evaluated on the same examples too. The data of one
comparison is therefore a matrix of per-example differences, seeds x examples.

- **Test.** For a binary metric with one seed on each side, the exact McNemar test (the
  sign test on the discordant pairs). Otherwise the paired sign-flip permutation test on
  the per-example differences averaged over seeds: under the null hypothesis that the two
  conditions are exchangeable on each example, each example's difference is as likely to
  have either sign. Exact enumeration up to 16 non-zero differences, else 9,999 random sign
  vectors (the p-value counts the observed one, so it is never 0).
- **Interval.** A hierarchical percentile bootstrap (1,000 replicates): seeds are resampled, then examples,
  so the interval carries both seed-to-seed and test-set sampling variance. With one seed
  only the examples are resampled, and the interval says so.
- **Family.** p-values of the comparisons a report shows are adjusted together: Holm
  (family-wise error rate) by default, or Benjamini-Hochberg (false discovery rate).

Random draws come from a generator seeded by the comparison's own key, so the same folder
gives the same bytes, in one process or several.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from planner.analyze.stats import mcnemar_exact, wilson

Correction = Literal["holm", "bh"]

#: Documented defaults (docs/analysis.md): a finding needs an adjusted p below ALPHA.
ALPHA = 0.05
CORRECTION: Correction = "holm"
CORRECTION_NAMES = {"holm": "Holm (family-wise error rate)", "bh": "Benjamini-Hochberg (false discovery rate)"}

#: Bootstrap replicates of an interval, and random sign vectors of a permutation test.
BOOTSTRAP_REPS = 1000
PERMUTATIONS = 9999
#: Up to this many non-zero differences the permutation test enumerates every sign vector.
EXACT_UP_TO = 16


def rng_for(key: str) -> np.random.Generator:
    """A generator seeded by ``key``: the same comparison always draws the same numbers."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


@dataclass(frozen=True)
class Tested:
    """One paired comparison, A against B.

    Attributes:
        effect: mean difference A - B in the metric's units, over seeds and examples.
        ci_low, ci_high: its 95 % interval (hierarchical bootstrap).
        ci_basis: ``seeds x examples``, or ``examples only (1 seed)``.
        p: two-sided p-value of the paired test (unadjusted).
        test: the test's name.
        n_examples: paired examples.
        n_seeds: seeds of A (after pairing).
        discordant: ``(B only, A only)`` counts for a binary metric with one seed, else None.
    """

    effect: float
    ci_low: float
    ci_high: float
    ci_basis: str
    p: float
    test: str
    n_examples: int
    n_seeds: int
    discordant: tuple[int, int] | None = None


def sign_flip_p(d: np.ndarray, rng: np.random.Generator) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of ``mean(d) == 0``."""
    d = d[d != 0]
    m = len(d)
    if m == 0:
        return 1.0
    observed = abs(float(d.sum()))
    # Sums equal to the observed one up to rounding count as "as extreme".
    tol = 1e-9 * max(1.0, observed)
    if m <= EXACT_UP_TO:
        codes = np.arange(2 ** m, dtype=np.int64)[:, None]
        signs = ((codes >> np.arange(m)) & 1) * 2 - 1
        sums = np.abs(signs @ d)
        return float(np.mean(sums >= observed - tol))
    hits = 0
    done = 0
    d32 = d.astype(np.float32)
    total = float(d.sum())
    loose = 1e-5 * max(1.0, observed)
    # Chunks keep the sign matrix under about 8 MB whatever the number of examples.
    chunk = max(1, min(PERMUTATIONS, 8_000_000 // m))
    while done < PERMUTATIONS:
        k = min(chunk, PERMUTATIONS - done)
        # Random bits as 0/1 floats: sum(sign * d) = 2 * (bits @ d) - sum(d), one BLAS product.
        # Single precision halves the work; a sum is then off by at most about 1e-7 of its size, far
        # inside the 1e-5 tolerance, and distinct sums of averaged 0/1 outcomes differ by far more.
        bits = np.unpackbits(rng.integers(0, 256, size=(k, (m + 7) // 8), dtype=np.uint8), axis=1, count=m)
        sums = 2.0 * (bits.astype(np.float32) @ d32).astype(np.float64) - total
        hits += int(np.count_nonzero(np.abs(sums) >= observed - loose))
        done += k
    return (hits + 1) / (PERMUTATIONS + 1)


def bootstrap_mean_ci(x: np.ndarray, rng: np.random.Generator, reps: int = BOOTSTRAP_REPS) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``x`` (seeds x examples), seeds then examples resampled.

    A replicate's mean is sum over seeds of (seed weight x that seed's mean over the resampled
    examples); both come from count matrices, so no replicate is materialised example by example.
    """
    s, n = x.shape
    # counts[b, i]: how often example i is drawn in replicate b.
    draws = rng.integers(0, n, size=(reps, n)) + (np.arange(reps) * n)[:, None]
    counts = np.bincount(draws.ravel(), minlength=reps * n).reshape(reps, n)
    per_seed = counts @ x.T / n  # (reps, s): each seed's mean over the resampled examples
    if s > 1:
        picks = rng.integers(0, s, size=(reps, s)) + (np.arange(reps) * s)[:, None]
        weights = np.bincount(picks.ravel(), minlength=reps * s).reshape(reps, s) / s
        means = (weights * per_seed).sum(axis=1)
    else:
        means = per_seed[:, 0]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def paired_test(a: np.ndarray, b: np.ndarray, key: str, same_seeds: bool, interval: bool = True,
                mcnemar: bool = True) -> Tested:
    """Test A against B on paired examples.

    Args:
        a: A's per-example values, seeds x examples.
        b: B's per-example values on the same examples, seeds x examples (one row for a base model).
        key: the comparison's name (seeds its random draws).
        same_seeds: A's and B's rows are the same seeds (pair them seed by seed); else each
            side is averaged over its own seeds first.
        interval: compute the bootstrap interval (per-seed rows of deltas.csv need only p).
        mcnemar: allow the exact McNemar test for 0/1 values (not for contrasts of contrasts,
            whose values only happen to be 0 or 1).
    """
    rng = rng_for(key)
    if same_seeds and a.shape == b.shape:
        d = a - b
    else:
        d = a - b.mean(axis=0, keepdims=True)
    s, n = d.shape
    effect = float(d.mean())
    lo, hi = bootstrap_mean_ci(d, rng) if n > 0 and interval else (math.nan, math.nan)
    basis = "seeds x examples" if s > 1 else "examples only (1 seed)"
    binary = _is_binary(a) and _is_binary(b)
    if mcnemar and binary and s == 1 and b.shape[0] == 1:
        b_only = int(np.count_nonzero((b[0] == 1) & (a[0] == 0)))
        a_only = int(np.count_nonzero((b[0] == 0) & (a[0] == 1)))
        return Tested(effect, lo, hi, basis, mcnemar_exact(b_only, a_only), "exact McNemar", n, s, (b_only, a_only))
    p = sign_flip_p(d.mean(axis=0), rng)
    return Tested(effect, lo, hi, basis, p, "paired sign-flip permutation", n, s)


def mean_interval(x: np.ndarray, key: str, bounded: bool) -> tuple[float, float, str]:
    """A cell's 95 % interval from its per-example values (seeds x examples).

    Binary metrics never get an interval narrower than the Wilson interval of one seed's
    worth of examples, so 50 of 50 correct is not ``[1.000, 1.000]``.
    """
    s, n = x.shape
    lo, hi = bootstrap_mean_ci(x, rng_for(key))
    method = "bootstrap seeds x examples" if s > 1 else "bootstrap examples (1 seed)"
    if _is_binary(x) and n > 0:
        wlo, whi = wilson(min(n, max(0, round(float(x.mean()) * n))), n)
        lo, hi = min(lo, wlo), max(hi, whi)
        method += " with Wilson floor"
    if bounded:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return lo, hi, method


def adjust(p: list[float], method: Correction) -> list[float]:
    """p-values adjusted over their family: Holm's step-down, or Benjamini-Hochberg's step-up."""
    m = len(p)
    if m == 0:
        return []
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            out[i] = running
        return out
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, p[i] * m / (rank + 1))
        out[i] = min(1.0, running)
    return out


__all__ = ["ALPHA", "CORRECTION", "Correction", "Tested", "adjust", "bootstrap_mean_ci", "mean_interval",
           "paired_test", "rng_for", "sign_flip_p"]
