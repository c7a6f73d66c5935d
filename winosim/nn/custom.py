"""The user's own network in `winosim train --model MODULE:FACTORY` and `winosim trace`.

A *model factory* is `MODULE:FUNCTION`: a module importable from the working directory or PYTHONPATH and a
function in it that returns an `nn.Module` (called with `num_classes=` when it takes that parameter, else
with no argument). `build_custom` calls it (under the caller's torch seed, so the initialisation is
deterministic) and converts the result with `winosim.nn.convert` to the chosen method, with the
geometry of the dataset's input shape. A training checkpoint records the factory string and the input
shape in its configuration, so `--resume` and `winosim trace` rebuild the same model before loading its
weights (checkpoints are still loaded with `weights_only=True`: no pickled code).

Initialisation: a `spatial` model keeps the factory's weights; `native` and `winograd_relu` models start
from `WinogradConv2d`'s Winograd-domain initialisation (the paper's variance scaling), as the built-in
networks do (`--init-from` a spatial run gives native U = G g G^T instead).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence

from torch import nn

from winosim.errors import ConfigError
from winosim.nn.conversion import ConvertedModel, convert
from winosim.text import described


def parse_factory(factory: str) -> tuple[str, str]:
    """'package.module:function' -> (module, function); ConfigError when malformed."""
    module, sep, function = factory.partition(":")
    if not sep or not module or not function.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        raise ConfigError(f"--model must be MODULE:FACTORY (e.g. mynets:resnet34), got {factory!r}")
    return module, function


def factory_name(factory: str) -> str:
    """The network name a factory's models get: the function's name."""
    return parse_factory(factory)[1]


def load_factory(factory: str) -> Callable[..., object]:
    """Import MODULE and return its FACTORY, with the working directory importable (as `python -m` does)."""
    module_name, function = parse_factory(factory)
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"--model {factory}: no module {module_name!r} in the working directory ({cwd}) or on PYTHONPATH"
            ) from None
        raise ConfigError(f"--model {factory}: importing {module_name} fails ({described(exc)})") from None
    except Exception as exc:  # the user's module: report its failure in one line
        raise ConfigError(f"--model {factory}: importing {module_name} fails ({described(exc)})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    found = getattr(module, function, None)
    if not callable(found):
        raise ConfigError(f"--model {factory}: {module_name} has no function {function!r}")
    return found


def call_factory(factory: str, num_classes: int | None) -> nn.Module:
    """The factory's model, given `num_classes` when its signature takes it."""
    function = load_factory(factory)
    try:
        takes_classes = "num_classes" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_classes = False
    try:
        model = function(num_classes=num_classes) if takes_classes and num_classes is not None else function()
    except Exception as exc:
        raise ConfigError(f"--model {factory}: calling it fails ({described(exc)})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model {factory}: returned {type(model).__name__!r}, not a torch.nn.Module")
    return model


def build_custom(factory: str, mode: str, num_classes: int | None, input_shape: Sequence[int]) -> ConvertedModel:
    """The factory's model converted to `mode` (initialisation as in the module docstring), with geometry."""
    model = call_factory(factory, num_classes)
    init = "spatial" if mode == "spatial" else "fresh"
    return convert(model, mode, init=init, input_shape=input_shape, name=factory_name(factory))
