"""Linear CKA between two sets of activations of the same images, and its minibatch estimator.

Centered kernel alignment (Kornblith et al. 2019) with the linear kernel compares two representations
X (n x p) and Y (n x q) of the same n examples through their Gram matrices K = X X^T and L = Y Y^T:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

It is invariant to orthogonal transforms and isotropic scaling of either representation, not to
arbitrary invertible linear maps, so it compares what two layers compute, not how their units happen
to be ordered or scaled.

Two HSIC estimators:
- `hsic0`, the biased one, tr(K H L H) / (n - 1)^2 with H = I - 11^T/n: the full-batch reference
  (`cka_full`), Kornblith et al.'s formula;
- `hsic1`, the unbiased one of Song et al. 2012 (their HSIC_1), which Nguyen, Raghu and Kornblith 2021
  ("Do wide and deep networks learn the same things?") average over minibatches:

      CKA_mb = mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) * mean_i HSIC_1(L_i, L_i))

  Because each minibatch term is unbiased, the average does not depend on the batch size the way
  averaging biased terms would, and memory is bounded by one batch's b x b Gram matrices: no
  activation matrix over all images is ever stored. `MinibatchCKA` accumulates the terms; the
  per-batch terms are kept (three numbers a batch) so that an interval over images can be drawn.

Pure numpy; Gram matrices are float64 (the unbiased estimator subtracts large sums).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_BATCH = 4   # HSIC_1 divides by n - 3


def gram(x: np.ndarray) -> np.ndarray:
    """The linear-kernel Gram matrix X X^T (float64) of n examples; any trailing shape is flattened
    (a conv layer's C x H x W map is one feature vector, as Kornblith et al. do)."""
    flat = np.asarray(x).reshape(len(x), -1).astype(np.float64, copy=False)
    return flat @ flat.T


def _check_grams(k: np.ndarray, l: np.ndarray) -> int:
    if k.shape != l.shape or k.ndim < 2 or k.shape[-1] != k.shape[-2]:
        raise ValueError(f"Gram matrices must be square and of one shape, got {k.shape} and {l.shape}")
    return k.shape[-1]


def center(k: np.ndarray) -> np.ndarray:
    """H K H with H = I - 11^T/n: the Gram matrix of the centred features."""
    return k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()


def hsic0(k: np.ndarray, l: np.ndarray) -> float:
    """Biased HSIC of two n x n Gram matrices: tr(K H L H) / (n - 1)^2."""
    n = _check_grams(k, l)
    return float(np.sum(center(k) * l) / (n - 1) ** 2)


def hsic1(k: np.ndarray, l: np.ndarray) -> np.ndarray | float:
    """Unbiased HSIC (Song et al. 2012, HSIC_1) of Gram matrices of n >= 4 examples.

    With K~, L~ the Gram matrices with their diagonals set to zero:
        1/(n(n-3)) [tr(K~ L~) + 1^T K~ 1 * 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1]
    `k` and `l` may be stacks (..., n, n) of batches: one value per batch is returned."""
    n = _check_grams(k, l)
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} examples, got {n}")
    kt, lt = _zero_diagonal(k), _zero_diagonal(l)
    trace = np.sum(kt * lt, axis=(-2, -1))            # tr(K~ L~): both symmetric
    ksum, lsum = kt.sum(axis=-1), lt.sum(axis=-1)     # K~ 1, L~ 1
    cross = np.sum(ksum * lsum, axis=-1)              # 1^T K~ L~ 1
    total = ksum.sum(axis=-1) * lsum.sum(axis=-1) / ((n - 1) * (n - 2))
    out = (trace + total - 2.0 * cross / (n - 2)) / (n * (n - 3))
    return float(out) if np.ndim(out) == 0 else out


def _zero_diagonal(k: np.ndarray) -> np.ndarray:
    out = np.array(k, dtype=np.float64, copy=True)
    idx = np.arange(out.shape[-1])
    out[..., idx, idx] = 0.0
    return out


def cka_from_hsic(xy: float, xx: float, yy: float) -> float:
    """HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y)); NaN where a representation has no variance over the
    images (a layer whose units are all dead gives HSIC(X, X) = 0: similarity is undefined, not 0)."""
    if not (xx > 0 and yy > 0):
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


def cka_full(x: np.ndarray, y: np.ndarray, unbiased: bool = False) -> float:
    """Linear CKA of all n examples at once (the reference): X, Y are n x p and n x q (trailing
    shapes flattened). Biased HSIC by default, as Kornblith et al. 2019; `unbiased` uses HSIC_1.
    It holds n x n Gram matrices: a reference for small sets, not for a layer over many images."""
    if len(x) != len(y):
        raise ValueError(f"X and Y must hold the same examples, got {len(x)} and {len(y)} rows")
    k, l = gram(x), gram(y)
    est = hsic1 if unbiased else hsic0
    return cka_from_hsic(est(k, l), est(k, k), est(l, l))


def batch_terms(kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Per batch, the three HSIC_1 terms (xy, xx, yy) of stacks of Gram matrices (k, b, b): (k, 3)."""
    kx, ky = np.asarray(kx, np.float64), np.asarray(ky, np.float64)
    if kx.ndim == 2:
        kx, ky = kx[None], ky[None]
    return np.stack([hsic1(kx, ky), hsic1(kx, kx), hsic1(ky, ky)], axis=-1).reshape(-1, 3)


def cka_from_terms(terms: np.ndarray) -> float:
    """The minibatch CKA of per-batch terms (k, 3): mean xy / sqrt(mean xx * mean yy)."""
    xy, xx, yy = np.asarray(terms, np.float64).reshape(-1, 3).mean(axis=0)
    return cka_from_hsic(xy, xx, yy)


@dataclass
class MinibatchCKA:
    """Streaming unbiased minibatch CKA: feed it batches (activations or Gram matrices of the same
    images in both representations); memory is one batch. `value` is the estimate so far."""

    terms: list[np.ndarray] = field(default_factory=list)

    def update_grams(self, kx: np.ndarray, ky: np.ndarray) -> None:
        self.terms.append(batch_terms(kx, ky))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(x) != len(y):
            raise ValueError(f"a batch must hold the same images in both representations ({len(x)} vs {len(y)})")
        self.update_grams(gram(x), gram(y))

    @property
    def batches(self) -> int:
        return sum(len(t) for t in self.terms)

    def per_batch(self) -> np.ndarray:
        """(batches, 3): xy, xx, yy of every batch so far."""
        return np.concatenate(self.terms) if self.terms else np.zeros((0, 3))

    @property
    def value(self) -> float:
        if not self.terms:
            raise ValueError("no batch seen yet")
        return cka_from_terms(self.per_batch())


def minibatch_cka(grams_x: np.ndarray, grams_y: np.ndarray) -> float:
    """Unbiased minibatch CKA of two stacks of per-batch Gram matrices (k, b, b) of the same images."""
    return cka_from_terms(batch_terms(grams_x, grams_y))
