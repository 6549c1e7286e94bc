"""jaxomrl.eval.stats against its definitions: sample std, the IQM, the stratified bootstrap of
the mean (rliable's), Welch's interval of a difference."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from jaxomrl.eval import stats


def test_summary_is_the_mean_sample_std_iqm_and_a_bootstrap_interval_of_the_seed_means():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 8))                     # [seeds, tasks]
    s = stats.summarise(scores)
    seed_means = scores.mean(axis=1)
    assert s.n == 5
    assert s.mean == pytest.approx(scores.mean())
    assert s.std == pytest.approx(seed_means.std(ddof=1))
    assert s.iqm == pytest.approx(scipy_stats.trim_mean(scores.reshape(-1), 0.25))
    assert s.low < s.mean < s.high and s.iqm_low < s.iqm < s.iqm_high
    # Stratified bootstrap: resampled seed means stay within the seeds' range of task means.
    assert seed_means.min() - 1e-9 <= s.low and s.high <= seed_means.max() + 1e-9
    # The same scores give the same interval; more seeds a narrower one.
    assert stats.summarise(scores) == s
    wide = stats.summarise(rng.normal(size=(40, 8)))
    assert wide.high - wide.low < s.high - s.low


def test_the_interval_is_the_stratified_bootstrap_seeds_resampled_within_each_task():
    """Against the definition written out: each task's seeds resampled with replacement on their
    own, the mean of every resample, its 2.5 / 97.5 percentiles."""
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(4, 6)) + np.arange(6)       # tasks of different levels
    s = stats.summarise(scores)
    picks = rng.integers(0, 4, size=(40_000, 4, 6))       # [resample, seed slot, task]
    means = np.take_along_axis(scores[None], picks, axis=1).mean(axis=(1, 2))
    low, high = np.percentile(means, [2.5, 97.5])
    width = high - low
    assert abs(s.low - low) < 0.03 * width and abs(s.high - high) < 0.03 * width
    # Whole seeds resampled across tasks together (not stratified): another interval, which
    # the tolerance above tells apart.
    rows = scores[rng.integers(0, 4, size=(40_000, 4))].mean(axis=(1, 2))
    assert abs(np.subtract(*np.percentile(rows, [97.5, 2.5])) - width) > 0.1 * width


def test_one_seed_has_no_spread_and_no_interval():
    s = stats.summarise([3.0])
    assert (s.mean, s.n) == (3.0, 1) and math.isnan(s.std) and math.isnan(s.low)
    assert stats.cell(s) == "3.00"
    assert stats.summarise([1.0, 3.0]).to_json()["std"] == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match="seeds"):
        stats.summarise(np.zeros((2, 2, 2)))


def test_compare_is_welchs_interval_of_the_difference_signed_by_the_claim():
    a, b = [5.0, 6.0, 7.0], [1.0, 2.0, 2.5]
    c = stats.compare(a, b)
    ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high))
    assert c.held and c.distinguishable and c.verdict == "held"
    lower = stats.compare(a, b, lower_is_better=True)  # "a below b": reversed, as firmly
    assert not lower.held and lower.distinguishable
    assert (lower.low, lower.high) == pytest.approx((-ci.high, -ci.low))
    close = stats.compare([1.0, 2.0, 3.0], [1.5, 2.5, 1.0])
    assert not close.distinguishable and close.verdict.endswith("not distinguishable")
