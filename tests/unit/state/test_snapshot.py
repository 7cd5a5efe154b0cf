"""Histograms as the snapshot holds them: per bucket, so new bounds can take the old counts."""

from __future__ import annotations

from exporter.state.snapshot import Histogram


def test_rebinning_to_finer_buckets_keeps_counts_in_the_smallest_bucket_that_holds_them() -> None:
    hist = Histogram.empty((1, 5, 10))
    for value in (0.5, 3, 7, 100):
        hist.observe(value)
    finer = hist.rebinned((1, 3, 5, 10, 20))
    assert finer.counts == [1, 0, 1, 1, 0, 1]
    assert (finer.count, finer.sum) == (hist.count, hist.sum)
    assert hist.rebinned((1, 5, 10)) is hist


def test_a_non_finite_value_is_not_observed() -> None:
    hist = Histogram.empty((1, 5))
    for value in (float("inf"), float("nan"), 2.0):
        hist.observe(value)
    assert (hist.counts, hist.sum, hist.count) == ([0, 1, 0], 2.0, 1)
