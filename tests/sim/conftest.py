"""Shared fixtures of the simulator tests: the synthetic trace of the tiny network of sim_helpers."""

from __future__ import annotations

import pytest
from sim_helpers import tiny_network

from winosim.synthetic import synthetic_trace
from winosim.trace import Trace


@pytest.fixture(scope="session")
def tiny_trace() -> Trace:
    return synthetic_trace(tiny_network(), images=2, weight_density=0.4, activation_density=0.5, seed=3)
