"""benchmarks/bench_search.py's hypervolume and bookkeeping against hand-computed examples (no search run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_search.py"
_spec = importlib.util.spec_from_file_location("bench_search", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_hypervolume_of_two_points_and_a_dominated_one():
    # [0.2, 1] x [0.6, 1] = 0.32 and [0.5, 1] x [0.3, 1] = 0.35 overlap in [0.5, 1] x [0.6, 1] = 0.2: 0.47
    points = [(0.2, 0.6), (0.5, 0.3), (0.7, 0.7)]
    assert bench.hypervolume_2d(points) == pytest.approx(0.47)
    assert bench.hypervolume_2d(list(reversed(points))) == pytest.approx(0.47)


def test_hypervolume_ignores_points_beyond_the_reference_and_counts_ties_once():
    assert bench.hypervolume_2d([]) == 0.0
    assert bench.hypervolume_2d([(1.0, 0.0), (0.0, 1.2)]) == 0.0
    assert bench.hypervolume_2d([(0.5, 0.5), (0.5, 0.5), (0.5, 0.8)]) == pytest.approx(0.25)
    # a point better than the ideal is not clipped: [-0.5, 1] x [0, 1]
    assert bench.hypervolume_2d([(-0.5, 0.0)]) == pytest.approx(1.5)
    assert bench.hypervolume_2d([(0.0, 0.0)], reference=(2.0, 3.0)) == pytest.approx(6.0)


def test_front_and_epochs_to_reach():
    assert bench.front([(0.5, 0.3), (0.2, 0.6), (0.7, 0.7), (0.6, 0.3)]) == [(0.2, 0.6), (0.5, 0.3)]
    steps = [{"epochs": 8, "hv": 0.1}, {"epochs": 9, "hv": 0.3}, {"epochs": 17, "hv": 0.5}]
    assert bench.epochs_to_reach(steps, 0.3) == 9
    assert bench.epochs_to_reach(steps, 0.6) is None


def test_normalization_maps_the_bounds_to_zero_and_the_reference_to_one():
    norm = {
        "cost_lo": 1e5,
        "cost_hi": 1e7,
        "quality_metric": "accuracy",
        "loss_ideal": 0.02,
        "loss_reference": 0.12,
    }
    assert bench.normalize(norm, 1e5, 0.98) == pytest.approx((0.0, 0.0))
    assert bench.normalize(norm, 1e6, 0.93) == pytest.approx((0.5, 0.5))
    assert bench.normalize(norm, 1e7, 0.88) == pytest.approx((1.0, 1.0))
    psnr = {**norm, "quality_metric": "psnr", "loss_ideal": -30.0, "loss_reference": -20.0}
    assert bench.normalize(psnr, 1e6, 25.0) == pytest.approx((0.5, 0.5))
