"""Trace extraction: trained checkpoints of one network -> a `winosim.trace.Trace` with one variant each.

For every geometry layer the weight mask is taken in the domain where the layer multiplies (trace format
v1): Winograd layers of `native` / `winograd_relu` models give (K, C, 16) from the masked Winograd-domain
weights; everything else gives (K, C, R, S) (an FC layer is (K, C, 1, 1)). Activation masks come from N test
images (the same images for every variant), captured at each layer's input by forward pre-hooks in float32:

- `winograd_relu` Winograd layers: ReLU(B^T d B) != 0, i.e. V > 0, shape (N, C, TH, TW, 16);
- `native` Winograd layers: B^T ReLU(d) B != 0;
- `spatial` Winograd layers: ReLU(d) != 0, (N, C, H, W) (d != 0 for a converted layer without input ReLU);
- every other layer: its actual input != 0 (the RGB image for a stem, ReLU(x) for a shortcut or FC layer).

The test accuracy of every checkpoint is measured again here, and goes into the variant with the dense
model's accuracy recorded at training time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import winosim
from winosim.errors import ConfigError
from winosim.geometry import LayerGeometry
from winosim.nn.conversion import ConvertedConv2d
from winosim.nn.data import Dataset, load_dataset
from winosim.nn.layers import WinogradConv2d
from winosim.nn.models import WinoNet
from winosim.nn.train import (
    TrainConfig,
    describe_machine,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    select_device,
)
from winosim.nn.train_args import train_command
from winosim.trace import LayerMasks, Provenance, Trace, Variant

logger = logging.getLogger(__name__)


@torch.no_grad()
def layer_inputs(model: WinoNet, x: Tensor) -> dict[str, Tensor]:
    """The input tensor of every geometry layer for the batch `x` (eval mode, float32)."""
    captured: dict[str, Tensor] = {}
    handles = []
    for geom, module in model.layer_modules():

        def hook(mod: nn.Module, args: tuple[Tensor, ...], name: str = geom.name) -> None:
            captured[name] = args[0].detach().float()

        handles.append(module.register_forward_pre_hook(hook))
    try:
        model.eval()
        model(x.float())
    finally:
        for handle in handles:
            handle.remove()
    return captured


@torch.no_grad()
def layer_masks(geom: LayerGeometry, module: nn.Module, layer_input: Tensor) -> LayerMasks:
    """Weight and activation non-zero masks of one layer in its multiply domain (module docstring)."""
    n = layer_input.shape[0]
    if isinstance(module, WinogradConv2d):
        weight = module.masked_weight().float()
        if module.mode == "spatial":
            spatial = module.spatial_activation(layer_input) if isinstance(module, ConvertedConv2d) else None
            w_mask, a_mask = weight != 0, (torch.relu(layer_input) if spatial is None else spatial) != 0
        else:
            w_mask = weight.permute(2, 1, 0) != 0  # (16, C, K) -> (K, C, 16)
            a_mask = module.winograd_activation(layer_input).permute(2, 1, 3, 4, 0) != 0  # (N, C, TH, TW, 16)
    elif isinstance(module, nn.Linear):
        w_mask = (module.weight != 0).reshape(geom.out_channels, geom.in_channels, 1, 1)
        a_mask = (layer_input != 0).reshape(n, geom.in_channels, 1, 1)
    elif isinstance(module, nn.Conv2d):
        w_mask, a_mask = module.weight != 0, layer_input != 0
    else:
        raise ConfigError(f"layer {geom.name!r}: cannot extract masks from a {type(module).__name__}")
    return LayerMasks(
        weight=np.ascontiguousarray(w_mask.cpu().numpy()), activation=np.ascontiguousarray(a_mask.cpu().numpy())
    )


def sample_indices(count: int, images: int, seed: int) -> list[int]:
    """`images` distinct test-image indices out of `count`, seeded, sorted."""
    if not 1 <= images <= count:
        raise ConfigError(f"--images must be between 1 and the test set size {count}, got {images}")
    chosen = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:images]
    return sorted(int(i) for i in chosen)


def _variant_names(modes: Sequence[str], tags: Sequence[str], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(modes):
            raise ConfigError(f"--names gives {len(names)} names for {len(modes)} checkpoints")
        return list(names)
    out = [f"{mode}_{tag}" if list(modes).count(mode) > 1 else mode for mode, tag in zip(modes, tags, strict=True)]
    if len(set(out)) != len(out):
        raise ConfigError(f"variant names are not unique ({out}); pass --names")
    return out


def _dense_accuracy(
    path: Path, ckpt: dict[str, Any], accuracy: float, accuracy_of: Callable[[Path], float]
) -> tuple[float | None, str]:
    """The dense model's accuracy on the same test images: `accuracy` when the checkpoint is dense, else
    `accuracy_of(phase0_dense.pt)` beside the checkpoint when it exists (the run's dense model), else the value
    recorded at training time."""
    if ckpt.get("density") is None:
        return accuracy, "this checkpoint (dense), measured at extraction"
    sibling = path.parent / "phase0_dense.pt"
    if sibling.is_file() and sibling.resolve() != path.resolve():
        return accuracy_of(sibling), f"{sibling.name}, measured at extraction"
    recorded = ckpt.get("dense_accuracy")
    return recorded, "recorded at training time"


def _variant_recipe(
    path: Path,
    ckpt: Mapping[str, Any],
    cfg: TrainConfig,
    test_images: int,
    dense_source: str,
    extracted_on: str,
    search: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a variant's recipe records: the training configuration of checkpoint `path`, where the run stood
    (steps, wall time, the machine), how its accuracy was measured, the command that trains it and, when a
    density search chose it, that search."""
    state: Mapping[str, Any] = ckpt["state"]
    density = ckpt.get("density")
    recipe = {
        "checkpoint": path.name,
        "network": cfg.network,
        "method": cfg.mode,
        "dense_epochs": cfg.epochs,
        "densities": [d for d in cfg.densities if density is not None and d >= density],
        "retrain_epochs_per_step": cfg.retrain_epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "retrain_lr": cfg.retrain_lr,
        "lr_drops": list(cfg.lr_drops),
        "momentum": cfg.momentum,
        "nesterov": cfg.nesterov and cfg.momentum > 0,
        "weight_decay": cfg.weight_decay,
        "precondition": cfg.precondition,
        "schedule": cfg.schedule,
        "warmup": cfg.warmup,
        "final_lr_fraction": cfg.final_lr_fraction,
        "label_smoothing": cfg.label_smoothing,
        "dropout": cfg.dropout,
        "precision": cfg.precision,
        "train_limit": cfg.train_limit,
        "epoch_images": cfg.epoch_images,
        "retrain_epoch_images": cfg.retrain_epoch_images,
        "init_from": Path(cfg.init_from).name if cfg.init_from else None,
        "branch_from": cfg.branch_from,
        "seed": cfg.seed,
        "steps": state.get("step"),
        "train_wall_s": round(float(state.get("wall_s", 0.0)), 1),
        "accuracy_at_training": ckpt.get("accuracy"),
        "test_images_for_accuracy": test_images,
        "measured_weight_density": ckpt.get("measured_density"),
        "dense_accuracy_source": dense_source,
        "trained_on": ckpt.get("machine"),  # None: a checkpoint from before machines were recorded
        # where and in which precision its steps ran (`precision` above may say `auto`); None: not recorded
        "trained_in": list(state.get("segments", [])) or None,
        "extracted_on": extracted_on,
        "train_command": train_command(cfg),  # the run's own command (native: its retraining from init_from)
    }
    if cfg.model_factory is not None:
        recipe["model_factory"] = cfg.model_factory
    if search is not None:
        recipe["density_search"] = dict(search)
    return recipe


def extract_trace(
    checkpoints: Sequence[str | Path],
    data: str | Path,
    *,
    images: int = 8,
    seed: int = 0,
    test_limit: int | None = None,
    names: Sequence[str] | None = None,
    device: str | None = None,
    precision: str = "fp32",
    command: str = "",
    searches: Sequence[Mapping[str, Any] | None] | None = None,
    measured: Mapping[Path, float] | None = None,
) -> Trace:
    """Build a trace with one variant per checkpoint (all of the same network). `searches`, one per checkpoint,
    is the density search that chose it (`DensityCurve.to_dict`), stored in the variant's recipe. `measured`
    holds accuracies already measured exactly as this function measures them (the same `test_limit` images in
    `precision`: `search.remeasured`), keyed by resolved checkpoint path; those checkpoints are not evaluated
    again. Every other checkpoint is evaluated once, however many variants share it as their dense model."""
    if not checkpoints:
        raise ConfigError("trace: give at least one checkpoint")
    if searches is not None and len(searches) != len(checkpoints):
        raise ConfigError(f"trace: {len(searches)} density searches for {len(checkpoints)} checkpoints")
    dev = select_device(device)
    loaded = [load_checkpoint(path) for path in checkpoints]
    configs = [TrainConfig.from_dict(c["config"]) for c in loaded]
    first = configs[0]
    for path, cfg in zip(checkpoints, configs, strict=True):
        if (cfg.network, cfg.num_classes) != (first.network, first.num_classes):
            raise ConfigError(
                f"{path}: network {cfg.network} ({cfg.num_classes} classes) differs from the first checkpoint's "
                f"{first.network} ({first.num_classes} classes); one trace holds one network"
            )
    full_test: Dataset = load_dataset(data, "test")
    test_set = full_test.subset(test_limit)
    indices = sample_indices(len(full_test), images, seed)
    x, _ = full_test.take(indices)
    tags = [("dense" if c.get("density") is None else f"d{c['density']:.2f}".replace(".", "p")) for c in loaded]
    variant_names = _variant_names([c.mode for c in configs], tags, names)

    accuracies: dict[Path, float] = dict(measured or {})

    def accuracy_of(path: Path, model: WinoNet | None = None) -> float:
        key = path.resolve()
        if key not in accuracies:
            net = model if model is not None else model_from_checkpoint(load_checkpoint(path)).to(dev)
            accuracies[key] = evaluate(net, test_set, dev, precision)
        return accuracies[key]

    variants: list[Variant] = []
    geometry = None
    search_of = list(searches) if searches is not None else [None] * len(checkpoints)
    for path, ckpt, cfg, name, search in zip(checkpoints, loaded, configs, variant_names, search_of, strict=True):
        model = model_from_checkpoint(ckpt).to(dev)
        geometry = model.geometry
        accuracy = accuracy_of(Path(path), model)
        dense_accuracy, dense_source = _dense_accuracy(Path(path), ckpt, accuracy, accuracy_of)
        inputs = layer_inputs(model.float(), x.to(dev))
        masks = tuple(layer_masks(geom, module, inputs[geom.name]) for geom, module in model.layer_modules())
        density = ckpt.get("density")
        recipe = _variant_recipe(Path(path), ckpt, cfg, len(test_set), dense_source, describe_machine(dev), search)
        variants.append(
            Variant(
                name=name,
                method=cfg.mode,  # type: ignore[arg-type]
                masks=masks,
                target_density=1.0 if density is None else float(density),
                accuracy=accuracy,
                dense_accuracy=dense_accuracy,
                recipe=recipe,
            )
        )
        logger.info("variant %s (%s): test accuracy %.4f on %d images", name, path, accuracy, len(test_set))
    assert geometry is not None
    provenance = Provenance(
        dataset=f"{full_test.name} ({Path(data)})",
        images=images,
        seed=seed,
        winosim_version=winosim.__version__,
        command=command,
        synthetic=False,
        torch_version=str(torch.__version__),
        notes=(
            f"activation masks from test images {indices}; accuracy measured at extraction on {len(test_set)} "
            f"test images ({precision}); masks computed in float32"
        ),
    )
    return Trace.of_network(geometry, variants, provenance)
