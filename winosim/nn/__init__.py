"""The torch side of winosim (needs torch): Winograd layers, networks, data, training with pruning, extraction.

`winosim.nn.convert(model, method)` converts any CNN to Winograd-domain layers (`winosim.nn.conversion`).
"""

from winosim.nn.conversion import convert

__all__ = ["convert"]
