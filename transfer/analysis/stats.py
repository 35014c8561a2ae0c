"""Intervals for the analysis: a percentile bootstrap over nets (the spread between runs) and, where a
number rests on one pair of nets, over minibatches of images (how much it depends on the images drawn;
says nothing about another training run)."""
from __future__ import annotations

import numpy as np

LEVEL = 0.95


def _percentiles(samples: np.ndarray) -> tuple[float, float] | None:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None
    lo, hi = np.percentile(samples, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(lo), float(hi)


def mean_interval(values: list[float], resamples: int, seed: int) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean of `values` (NaNs left out); None with fewer than 2."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if len(vals) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(vals), size=(resamples, len(vals)))
    return _percentiles(vals[idx].mean(axis=1))


def batch_interval(terms: np.ndarray, resamples: int, seed: int) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of a minibatch CKA over its batches: the per-batch HSIC
    terms (k, 3) resampled with replacement, the CKA recomputed from each resample."""
    terms = np.asarray(terms, np.float64)
    k = len(terms)
    if k < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, k, size=(resamples, k))
    means = terms[idx].mean(axis=1)                     # (resamples, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (means[:, 1] > 0) & (means[:, 2] > 0)
        vals = np.where(ok, means[:, 0] / np.sqrt(np.where(ok, means[:, 1] * means[:, 2], 1.0)), np.nan)
    return _percentiles(vals)

