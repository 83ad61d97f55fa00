"""Selection policies that move a route's weight toward the arm with the better reward
(Clipper's model selection), and the rule that stops an arm which errs or degrades.

Rewards come from labelled feedback (:class:`modelport.serve.rewards.RewardSource`): per arm,
the number of labelled rows ``n`` and a realised metric, turned into a mean reward ``r`` in
[0, 1] (:func:`reward_of`: accuracy and AUC as they are, ``reward`` as clients sent it, log loss
as ``exp(-loss)``, RMSE / MAE as ``1 / (1 + error / scale)``). Every ``update_every`` seconds:

* **Thompson sampling**: each arm's reward is Beta(1 + n r, 1 + n (1 - r)); the new weights are
  each arm's probability of being the best (4,000 joint draws), so a clearly better arm gets
  nearly all the traffic and close arms keep sharing it;
* **Exp3**: exponential weights on importance-weighted rewards of the rows labelled since the last
  update, with a share ``gamma`` spread evenly so that no arm is starved of feedback.

Weights are then fitted into the user's bounds (per arm ``min_weight`` .. ``max_weight``,
percent, adding up to 100: :func:`bounded`). Until every arm has ``min_labels`` labelled rows the
weights stay as configured. A stopped arm has weight 0 whatever its bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modelport.serve.routing_spec import LOWER_IS_BETTER, BanditSpec

THOMPSON_DRAWS = 4000


def reward_of(spec: BanditSpec, metrics: dict[str, float] | None) -> float | None:
    """The mean reward in [0, 1] the realised ``metrics`` give under ``spec.reward``, or None."""
    if not metrics:
        return None
    value = metrics.get(spec.reward)
    if value is None or not math.isfinite(value):
        return None
    if spec.reward == "log_loss":
        return math.exp(-max(value, 0.0))
    if spec.reward in ("rmse", "mae"):
        return 1.0 / (1.0 + max(value, 0.0) / float(spec.scale or 1.0))
    return min(max(value, 0.0), 1.0)


def worse_by(spec: BanditSpec, arm: float, baseline: float) -> float:
    """How much worse ``arm``'s realised metric is than ``baseline``'s, in the metric's own units."""
    return arm - baseline if spec.reward in LOWER_IS_BETTER else baseline - arm


def thompson(labels: Sequence[int], rewards: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Each arm's probability of having the best reward (in [0, 1], summing to 1)."""
    n = np.asarray(labels, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    alpha, beta = 1.0 + n * r, 1.0 + n * (1.0 - r)
    draws = rng.beta(alpha, beta, size=(THOMPSON_DRAWS, n.size))
    best = np.bincount(np.argmax(draws, axis=1), minlength=n.size).astype(np.float64)
    return best / best.sum()


class Exp3:
    """Exp3 over ``k`` arms: log-weights updated with importance-weighted rewards."""

    def __init__(self, k: int, gamma: float) -> None:
        self.k = k
        self.gamma = gamma
        self.log_w = np.zeros(k)
        self.seen_labels = np.zeros(k)
        self.seen_reward = np.zeros(k)  # n * r at the last update

    def probabilities(self) -> np.ndarray:
        w = np.exp(self.log_w - self.log_w.max())
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / self.k

    def update(self, labels: Sequence[int], rewards: Sequence[float]) -> np.ndarray:
        """Take the rows labelled since the last call (from cumulative ``labels`` and mean
        ``rewards``) and return the new probabilities."""
        n = np.asarray(labels, dtype=np.float64)
        total = n * np.asarray(rewards, dtype=np.float64)
        dr = np.maximum(total - self.seen_reward, 0.0)
        p = self.probabilities()
        # each labelled row of arm i is one round in which i was played with probability p_i
        self.log_w += self.gamma / self.k * dr / np.maximum(p, 1e-12)
        # a row rewarded 0 adds nothing: only the sums of rewards move the weights
        self.seen_labels, self.seen_reward = np.maximum(n, self.seen_labels), np.maximum(total, self.seen_reward)
        return self.probabilities()


def bounded(weights: Sequence[float] | np.ndarray, lo: Sequence[float], hi: Sequence[float], *,
            total: float = 100.0) -> list[float]:
    """``weights`` scaled so that, each clipped into [lo_i, hi_i], they add up to ``total``.

    The bounds must admit a solution (sum(lo) <= total <= sum(hi); the routing file's check).
    Arms with ``hi == 0`` (stopped) get 0.
    """
    w = np.maximum(np.asarray(weights, dtype=np.float64), 1e-12)
    low, high = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if low.sum() >= total - 1e-12:
        return [float(x) * total / max(low.sum(), 1e-12) for x in low]
    if high.sum() <= total + 1e-12:
        return [float(x) * total / max(high.sum(), 1e-12) for x in high]

    def filled(c: float) -> np.ndarray:
        return np.clip(c * w, low, high)

    a, b = 0.0, 1.0
    while filled(b).sum() < total:
        b *= 2.0
        if b > 1e300:
            break
    for _ in range(200):
        mid = (a + b) / 2.0
        if filled(mid).sum() < total:
            a = mid
        else:
            b = mid
    out = filled(b)
    out *= total / out.sum()  # the last fraction of the bisection
    return [float(x) for x in out]
