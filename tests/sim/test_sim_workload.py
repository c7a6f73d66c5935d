"""Lowering a trace to a workload: the per-row counts against brute force, and the pair counts against
winosim.counts.

`act_rq` must equal, for every row of output columns, how many columns have a non-zero activation at each
(channel, position) -- for spatial layers through an explicit im2col with zero padding.
"""

from __future__ import annotations

import numpy as np
from sim_reference import _im2col

from winosim.counts import count_trace
from winosim.trace import Trace
from winosim.workload import SEGMENT_COLUMNS, lower


def test_rows_match_brute_force(tiny_trace: Trace) -> None:
    workload = lower(tiny_trace)
    for work in workload.works:
        if work.dense:
            assert work.act_rq is None and work.weight_kq is None
            continue
        assert work.variant is not None and work.act_rq is not None
        layer = work.layer
        act = tiny_trace.variant(work.variant).masks[work.layer_index].activation
        if work.domain == "winograd":
            expected = act.transpose(0, 2, 3, 1, 4).sum(axis=2)  # (N, TH, C, P)
        else:
            cols = _im2col(act, layer.kernel, layer.stride, layer.padding, layer.out_height, layer.out_width)
            expected = cols.sum(axis=2)  # (N, OH, C, R, S)
            np.testing.assert_array_equal(work.input_nnz_hw, act.sum(axis=1))
        np.testing.assert_array_equal(work.act_rq, expected.reshape(work.rows, work.q))
        if work.domain == "winograd":
            segments = [
                act[:, :, :, c0 : c0 + SEGMENT_COLUMNS].sum(axis=3) for c0 in range(0, act.shape[3], SEGMENT_COLUMNS)
            ]
            per_segment = np.stack(segments, axis=3).transpose(0, 2, 3, 1, 4)  # (N, TH, segments, C, P)
        else:
            segments = [
                cols[:, :, c0 : c0 + SEGMENT_COLUMNS].sum(axis=2) for c0 in range(0, cols.shape[2], SEGMENT_COLUMNS)
            ]
            per_segment = np.stack(segments, axis=2)  # (N, OH, segments, C, R, S)
        assert work.act_sq is not None
        np.testing.assert_array_equal(work.act_sq, per_segment.reshape(-1, work.q))
        assert work.act_rq.shape == (work.rows, work.q)
        assert work.columns == work.rows * work.columns_per_row


def test_pair_counts_agree_with_exact_counts(tiny_trace: Trace) -> None:
    counts = {(c.layer, c.method, c.variant): c for c in count_trace(tiny_trace)}
    workload = lower(tiny_trace)
    assert len(workload.works) == len(counts)
    for work in workload.works:
        count = counts[(work.layer.name, work.method, work.variant)]
        pairs = work.pair_counts()
        assert pairs[(True, True)] == count.multiplies
        assert pairs[(False, False)] == count.algorithmic_multiplies == work.algorithmic_multiplies
        assert pairs[(True, True)] <= min(pairs[(True, False)], pairs[(False, True)])
        assert max(pairs[(True, False)], pairs[(False, True)]) <= pairs[(False, False)]


def test_lowering_only_some_methods(tiny_trace: Trace) -> None:
    workload = lower(tiny_trace, ("winograd_relu",))
    assert {w.method for w in workload.works} == {"winograd_relu"}
    assert len(workload.works) == len(tiny_trace.layers)
