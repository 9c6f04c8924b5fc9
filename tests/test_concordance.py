"""diskrisk.concordance against scikit-survival's Harrell C, pair for pair."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored

from diskrisk.concordance import PairIndex, harrell_c, harrell_pairs


def sksurv_pairs(event, time, risk):
    c, conc, disc, tied, _ = concordance_index_censored(event, time, risk)
    return c, (conc, disc, tied)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_times", [3, 40, 10_000])
def test_counts_match_sksurv(seed, n_times):
    """Whole-day durations (many tied times), rounded risks (tied risks), rare failures."""
    rng = np.random.default_rng(seed)
    n = 3000
    time = rng.integers(1, n_times + 1, n).astype(float)
    event = rng.random(n) < 0.08
    risk = np.round(rng.normal(size=n) + 0.8 * event, 1)
    c, counts = sksurv_pairs(event, time, risk)
    ours = harrell_pairs(event, time, risk)
    assert (ours.concordant, ours.discordant, ours.tied_risk) == counts
    assert harrell_c(event, time, risk) == pytest.approx(c, abs=1e-12)


def test_edge_cases():
    # two failures on day 2: not comparable with each other; each is with the drive censored
    # that day (risk 1.5) and with the one seen on day 3
    t5, e5, r5 = (
        np.array([1.0, 2, 2, 2, 3]),
        np.array([0, 1, 1, 0, 0], bool),
        np.array([0, 2, 1, 1.5, 0]),
    )
    assert harrell_pairs(e5, t5, r5) == (3, 1, 0) == sksurv_pairs(e5, t5, r5)[1]
    t = np.array([1.0, 2.0, 2.0, 3.0])
    assert np.isnan(harrell_c(np.zeros(4, bool), t, np.arange(4.0)))
    assert np.isnan(harrell_c(np.array([0, 0, 0, 1], bool), t, np.arange(4.0)))  # none after
    with pytest.raises(ValueError, match="NaN"):
        harrell_pairs(np.ones(4, bool), t, np.array([0, np.nan, 1, 2]))


@pytest.mark.parametrize("seed", range(4))
def test_weighted_counts_are_the_counts_of_the_rows_repeated(seed):
    """A drive bootstrap's weights (how often each row was drawn, zero included) count the
    pairs of the rows repeated that often, as sksurv counts them."""
    rng = np.random.default_rng(seed)
    n = 800
    time = rng.integers(1, 30, n).astype(float)
    event = rng.random(n) < 0.1
    risk = np.round(rng.normal(size=n) + event, 1)
    index = PairIndex(event, time, risk)
    assert index.pairs() == harrell_pairs(event, time, risk)
    for _ in range(3):
        w = rng.poisson(1.0, n)
        rows = np.repeat(np.arange(n), w)
        _, counts = sksurv_pairs(event[rows], time[rows], risk[rows])
        ours = index.pairs(w)
        assert (ours.concordant, ours.discordant, ours.tied_risk) == counts
