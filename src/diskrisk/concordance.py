"""Harrell's concordance index in O(n log n), pair for pair the same as scikit-survival's.

Why not ``sksurv.metrics.concordance_index_censored`` directly: it masks the whole sample once
per event (O(events x n)), which is minutes per call on a fleet's stacked landmarks (300k drives
x a dozen landmarks, thousands of failures) and the yardstick calls it hundreds of times
(drive bootstrap). The pairs are sksurv's:

* a pair (i, j) is comparable when drive i failed at ``t_i`` and j was still at risk after it:
  ``t_j > t_i``, or ``t_j == t_i`` with j censored (two failures on the same day are not
  comparable);
* concordant when the failed drive has the higher risk, ``r_j < r_i - tol``; tied when
  ``|r_i - r_j| <= tol``; discordant otherwise;
* C = (concordant + tied / 2) / comparable.

Durations are whole days, so there are few distinct times: the risks of each time's rows are
sorted once, and every failure is placed among the rows of each later time with a binary
search (O(n log n + D · E log n) for D distinct times and E failures).

A drive bootstrap redraws how often each row counts, never its time or risk, so those sorts and
places serve every resample (:class:`PairIndex`): with row i drawn w_i times a comparable
pair occurs w_i · w_j times (two copies of one failed row are never comparable: same day, both
failures), and a resample's counts are prefix sums of its weights at the stored places,
O(n + D · E) each instead of a sort per resample on the repeated rows.
``tests/test_concordance.py`` checks the counts against sksurv on tied and untied data, and
the weighted counts against the rows repeated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TIED_TOL = 1e-8  # sksurv's default tied_tol


class Pairs(NamedTuple):
    concordant: int
    discordant: int
    tied_risk: int

    @property
    def comparable(self) -> int:
        return self.concordant + self.discordant + self.tied_risk

    @property
    def c_index(self) -> float:
        n = self.comparable
        return (self.concordant + 0.5 * self.tied_risk) / n if n else float("nan")


class PairIndex:
    """Harrell's pairs of one sample, placed once and counted under any row weights."""

    def __init__(self, event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> None:
        event = np.asarray(event, dtype=bool)
        time = np.asarray(time, dtype=float)
        risk = np.asarray(risk, dtype=float)
        if not (event.shape == time.shape == risk.shape) or event.ndim != 1:
            raise ValueError("event, time and risk must be 1-d arrays of one length")
        if np.isnan(risk).any():
            raise ValueError("risk holds NaN")
        self.size = event.size
        small = np.int32 if 2 * self.size < 2**31 else np.int64  # a failure meets D blocks
        fail = np.flatnonzero(event)
        fail_t, fail_r = time[fail], risk[fail]
        lo, hi = fail_r - TIED_TOL, fail_r + TIED_TOL
        order = np.argsort(time, kind="stable")
        times, starts = np.unique(time[order], return_index=True)
        ends = np.append(starts[1:], time.size)
        # blocks of rows sorted by risk, laid end to end; per failure and block it meets,
        # where the block starts, where its lower and higher risks start, where it ends
        rows: list[np.ndarray] = []
        who: list[np.ndarray] = []
        at: list[list[np.ndarray]] = [[], [], [], []]
        offset = 0
        for t, a, b in zip(times, starts, ends, strict=True):
            at_t = order[a:b]
            # failures before t meet every row at t; failures at t only the rows censored at t
            for meets, block in ((fail_t < t, at_t), (fail_t == t, at_t[~event[at_t]])):
                if not block.size or not meets.any():
                    continue
                block = block[np.argsort(risk[block], kind="stable")]
                ranked = risk[block]
                below = np.searchsorted(ranked, lo[meets], side="left")
                upto = np.searchsorted(ranked, hi[meets], side="right")
                rows.append(block)
                who.append(fail[meets])
                for k, pos in enumerate((0, below, upto, block.size)):
                    at[k].append(np.broadcast_to(offset + pos, below.shape).astype(small))
                offset += block.size

        def joined(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts).astype(small) if parts else np.zeros(0, small)

        self._rows, self._who = joined(rows), joined(who)
        self._start, self._low, self._high, self._end = (joined(a) for a in at)

    def pairs(self, weights: np.ndarray | None = None) -> Pairs:
        """The counts with row i drawn ``weights[i]`` times (integers; default once each)."""
        w = np.ones(self.size, np.int64) if weights is None else np.asarray(weights, np.int64)
        prefix = np.concatenate(([0], np.cumsum(w[self._rows])))
        fw = w[self._who]
        lower = prefix[self._low] - prefix[self._start]
        concordant = int(fw @ lower)
        tied = int(fw @ (prefix[self._high] - prefix[self._low]))
        comparable = int(fw @ (prefix[self._end] - prefix[self._start]))
        return Pairs(concordant, comparable - concordant - tied, tied)


def harrell_pairs(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> Pairs:
    """Concordant, discordant and risk-tied comparable pairs (higher risk = earlier failure)."""
    return PairIndex(event, time, risk).pairs()


def harrell_c(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C (NaN without a comparable pair)."""
    return harrell_pairs(event, time, risk).c_index
