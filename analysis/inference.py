"""The statistics behind analysis.claims: a clustered bootstrap, the verdict rules and the
degeneration rule (DESIGN §9). Plain numbers in, plain numbers out; no run records.

- `bootstrap_ci` resamples clusters, not pairs: the seeds of one (dataset, attribute) share
  β, R and the prefixes, so they are not independent draws; Student's t with k − 1
  degrees of freedom widens the interval for few clusters. Each pair a cluster of its own
  is the plain pairs bootstrap.
- `verdict` for a signed claim, `non_superiority` for "A does not help": the upper CI
  bound of A − B below a stated margin holds; a lower bound at or above it does not.
- `sign_flip_test` is the test built for few clusters, and what decides a verdict: under
  "no effect" each cluster's mean difference is as likely negative as positive, so the
  2^k sign patterns of the k cluster means are equally likely and the observed |mean| is
  ranked among them. Its size is exact at any k (no variance is estimated), the price is
  that p cannot fall below 2 / 2^k: with fewer than 6 clusters no two-sided 5 % verdict
  exists at all, and the row says so instead of guessing. (The wild cluster bootstrap with
  Webb's weights reaches smaller p at 3-5 clusters by estimating a variance from them, and
  over-rejects there: not used.)
- `falls` is degeneration: how far a run's last epoch is below the best epoch of the first
  half of training. The best epoch is picked on the other runs' mean curve: picked on the
  run's own curve, the maximum of noise would make every flat curve "fall".
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from scipy.stats import t as student_t

N_BOOT = 10_000
HOLDS, FAILS, UNSURE, NO_RUNS = "holds", "does not hold", "inconclusive", "no runs"

Curve = dict[int, float]  # epoch -> value


def bootstrap_ci(
    diffs: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
    level: float = 0.95,
) -> tuple[float, float]:
    """CI of the mean of `diffs`: mean ± t(k − 1) · SE, SE from a bootstrap over clusters.

    A resample draws the k clusters with replacement and takes the mean over every
    difference in them (a cluster weighs by its size, as in the point estimate); SE is the
    resampled means' sd times sqrt(k / (k − 1)). Not the percentile interval: over few
    clusters it is too narrow (flat-noise curves in 4 clusters read "holds" or "does not
    hold" 26 % of the time, measured; with this interval ~5 %). `clusters=None` puts each
    difference in a cluster of its own.
    """
    data = np.asarray(diffs, dtype=float)
    if clusters is None:
        sums, counts = data, np.ones(len(data))
    else:
        order = list(dict.fromkeys(clusters))  # first-seen order: reproducible draws
        index = {c: i for i, c in enumerate(order)}
        ids = np.array([index[c] for c in clusters])
        sums = np.bincount(ids, weights=data, minlength=len(order))
        counts = np.bincount(ids, minlength=len(order)).astype(float)
    k = len(sums)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    se = float(np.std(means)) * math.sqrt(k / (k - 1))
    half = float(student_t.ppf(0.5 + level / 2, k - 1)) * se
    mean = float(data.mean())
    return mean - half, mean + half


ALPHA = 0.05
EXACT_MAX = 16  # clusters up to which every sign pattern is enumerated (65 536)


def cluster_means(diffs: Sequence[float], clusters: Sequence[Hashable] | None) -> np.ndarray:
    """Each cluster's mean difference, clusters in first-seen order (None: each its own)."""
    data = np.asarray(diffs, dtype=float)
    if clusters is None:
        return data
    order = list(dict.fromkeys(clusters))
    index = {c: i for i, c in enumerate(order)}
    ids = np.array([index[c] for c in clusters])
    sums = np.bincount(ids, weights=data, minlength=len(order))
    return sums / np.bincount(ids, minlength=len(order))


def sign_flip_test(
    diffs: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    seed: int = 0,
    n_draws: int = N_BOOT,
) -> tuple[float, int, int]:
    """(two-sided p, clusters with a positive mean, k) of "the mean difference is 0".

    The statistic is the mean of the k cluster means (each cluster weighs the same: a
    cluster is one draw of β's samples, whatever its count of π seeds); its null
    distribution is every way of flipping the clusters' signs, enumerated up to EXACT_MAX
    clusters and drawn `n_draws` times (seeded) above. p counts the patterns at least as
    extreme as the observed one, the observed one included, so p ≥ 2 / 2^k.
    """
    means = cluster_means(diffs, clusters)
    k = len(means)
    if k == 0:
        return math.nan, 0, 0
    observed = abs(means.mean())
    if k <= EXACT_MAX:
        patterns = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1) * 2 - 1
    else:
        rng = np.random.default_rng(seed)
        patterns = np.vstack([np.ones(k), rng.choice([-1, 1], size=(n_draws, k))])
    flipped = np.abs(patterns @ means / k)
    p = float(np.mean(flipped >= observed - 1e-12 * max(1.0, observed)))
    return p, int((means > 0).sum()), k


def smallest_p(k: int) -> float:
    """The smallest two-sided p a sign-flip test over k clusters can give."""
    return 2.0 / 2**k if k > 0 else math.nan


def flip_verdict(effect: float, p: float, sign: int, n: int, n_clusters: int) -> str:
    """holds / does not hold when the sign-flip p is below ALPHA on the claimed / the other
    side of 0, else inconclusive (always so below 6 clusters: see smallest_p)."""
    if n == 0:
        return NO_RUNS
    if n < 2 or n_clusters < 2 or math.isnan(p) or p >= ALPHA:
        return UNSURE
    return HOLDS if effect * sign > 0 else FAILS


def verdict(lo: float, hi: float, sign: int, n: int, n_clusters: int | None = None) -> str:
    """holds / does not hold / inconclusive from the CI and the claimed sign; fewer than two
    pairs (or clusters) cannot be resampled, so they are inconclusive."""
    if n == 0:
        return NO_RUNS
    if n < 2 or (n_clusters is not None and n_clusters < 2):
        return UNSURE
    if lo > 0:
        return HOLDS if sign > 0 else FAILS
    if hi < 0:
        return HOLDS if sign < 0 else FAILS
    return UNSURE


def non_superiority(lo: float, hi: float, margin: float, n: int, n_clusters: int) -> str:
    """ "A does not help B by `margin` or more": holds when the CI of A − B lies below the
    margin, does not hold when it lies at or above it, else inconclusive."""
    if n == 0:
        return NO_RUNS
    if n < 2 or n_clusters < 2:
        return UNSURE
    if hi < margin:
        return HOLDS
    if lo >= margin:
        return FAILS
    return UNSURE


def first_half(epochs: Sequence[int]) -> list[int]:
    """The epochs of the first half of training: 10 of 20, 2 of 3 (never the last)."""
    ordered = sorted(epochs)
    return ordered[: min(math.ceil(len(ordered) / 2), len(ordered) - 1)]


def falls(curves: dict[Hashable, Curve]) -> dict[Hashable, float]:
    """{run: value at the best first-half epoch − value at the last epoch} (> 0: it fell).

    The best first-half epoch of a run is the argmax of the mean curve of the *other* runs
    (leave one out); a lone run uses its own. Runs with fewer than two epochs are left out.
    """
    usable = {k: c for k, c in curves.items() if len(c) >= 2}
    out = {}
    for key, curve in usable.items():
        others = [c for k, c in usable.items() if k != key] or [curve]
        candidates = first_half(list(curve))
        mean = {e: [c[e] for c in others if e in c] for e in candidates}
        score = {e: float(np.mean(v)) if v else float(curve[e]) for e, v in mean.items()}
        peak = max(candidates, key=lambda e: (score[e], -e))  # ties: the earlier epoch
        out[key] = float(curve[peak]) - float(curve[max(curve)])
    return out
