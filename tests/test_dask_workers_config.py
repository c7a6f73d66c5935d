"""docs/dask-workers.yaml, the Dask settings recommended for sweep workers (and used by the benchmark's
clusters): it parses, and a nanny started under it no longer sets MALLOC_TRIM_THRESHOLD_ in its workers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_worker_settings_unset_the_nannys_malloc_trim_threshold() -> None:
    dask = pytest.importorskip("dask")
    nanny = pytest.importorskip("distributed.nanny")
    spec = importlib.util.spec_from_file_location("bench_sweep", ROOT / "benchmarks" / "bench_sweep.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    config = bench.sweep_worker_config()
    assert config["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] is None
    with dask.config.set(config):
        environ = nanny._get_env_variables("distributed.nanny.pre-spawn-environ")
        assert "MALLOC_TRIM_THRESHOLD_" not in environ and environ["OMP_NUM_THREADS"] == "1"
        assert dask.config.get("distributed.worker.profile.enabled") is False
        assert dask.config.get("distributed.admin.tick.interval") == "1s"
