"""winosim: what sparse Winograd-ReLU CNNs buy on a mobile PE array, in multiplies, cycles and energy.

The pipeline runs one way: a `Trace` (masks from a trained model, `winosim.trace`) is counted exactly
(`winosim.counts`) and simulated on an architecture (`winosim.simulate`), and the counts are costed with an
energy table. torch is needed only for `winosim.nn`.
"""

from __future__ import annotations

# `winosim.simulate(trace, arch)` is the simulator's entry point. Importing it here binds the package
# attribute `simulate` to the function (the module stays importable as `from winosim.simulate import ...`).
from winosim.simulate import simulate
from winosim.version import __version__

__all__ = ["__version__", "simulate"]
