"""A card for every trace from trained models: what each variant is, the density search that chose it, and
whether the paper's multiply claim holds on it.

For each non-synthetic trace in traces/, read only from the trace (its metadata and masks):
- per variant: method, measured weight density of the Winograd layers, test accuracy and its dense model's,
  mean activation density in the multiply domain, training images, steps and wall time;
- the paper's claim (paper.md section 5) checked on the model: Winograd-ReLU's multiply reduction against
  dense spatial and dense Winograd, and against the two pruned baselines, over the Winograd layers and over
  the whole network (exact zero-skipping counts, `winosim.counts`);
- the density search of each variant (accuracy against density along its pruning schedule, and the point
  selected), as a table and as a figure.

Writes analyses/out/card-<trace>.md and card-<trace>-curve.png, and analyses/out/claims.md: the README's claim
table (every trained trace side by side against the paper's figures; a test checks that README.md quotes it).
With --update-readmes it also puts the new tables in their places: the claim table in README.md and each trace's
variant table in traces/README.md (under the heading "### `<trace>.npz`:"), for when a shipped trace changes.

    python analyses/trace_cards.py [--traces DIR] [--out DIR] [--update-readmes]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _shared import ROOT, arguments, header, shipped_traces, standard_error_points, write_markdown

from winosim.counts import count_trace
from winosim.figures import new_figure, save_png
from winosim.report import multiplies_frame
from winosim.trace import Trace, Variant

PAPER_REDUCTION = 10.0
"""Winograd-ReLU's multiply reduction the paper reports (10.4x VGG-nagadomi, 10.8x ResNet-18; paper.md 5)."""
PAPER_ADVANTAGE = (2.0, 3.0)
"""...and its advantage over the pruned spatial and native pruned Winograd baselines."""
TRAIN_SET_IMAGES = 50_000


def _images(per_epoch: Any, epochs: int) -> int:
    return int(per_epoch or TRAIN_SET_IMAGES) * epochs


def _training(recipe: dict[str, Any]) -> tuple[str, str]:
    """(dense training, retraining) in images, from the variant's recipe."""
    dense = "from `spatial`'s dense model" if recipe.get("init_from") else "-"
    if not recipe.get("init_from") and recipe.get("dense_epochs"):
        images = _images(recipe.get("epoch_images"), recipe["dense_epochs"])
        dense = f"{images:,} images ({recipe['dense_epochs']} x {recipe.get('epoch_images') or 'all'})"
    steps = len(recipe.get("densities", []))
    per_step = _images(
        recipe.get("retrain_epoch_images") or recipe.get("epoch_images"), recipe.get("retrain_epochs_per_step", 0)
    )
    return dense, f"{steps} step{'' if steps == 1 else 's'} x {per_step:,} images"


def _number(value: Any, spec: str) -> str:
    """`value` formatted with `spec`, or "?" when the recipe does not record it."""
    return format(value, spec) if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def variant_table(trace: Trace) -> str:
    lines = [
        "| variant | method | weight density (Winograd layers) | test accuracy | its dense model | change (points) "
        "| activation density (multiply domain) | dense training | pruning + retraining | steps | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in trace.variants:
        recipe = dict(v.recipe)
        dense, retrain = _training(recipe)
        acc, dense_acc = v.accuracy or 0.0, v.dense_accuracy or 0.0
        tested = recipe.get("test_images_for_accuracy")
        error = f" ± {standard_error_points(acc, tested):.2f}" if isinstance(tested, int) and tested > 0 else ""
        dense_error = f" ± {standard_error_points(dense_acc, tested):.2f}" if error else ""
        lines.append(
            f"| `{v.name}` | {v.method} | {trace.weight_density(v):.3f} | {100 * acc:.2f}%{error} | "
            f"{100 * dense_acc:.2f}%{dense_error} | "
            f"{100 * (acc - dense_acc):+.2f} | {trace.activation_density(v):.3f} | {dense} | {retrain} | "
            f"{_number(recipe.get('steps'), ',')} | {_number(recipe.get('train_wall_s'), ',.0f')} s |"
        )
    images = {dict(v.recipe).get("test_images_for_accuracy") for v in trace.variants}
    lines += [
        "",
        f"Accuracies: top-1 on the first {', '.join(str(i) for i in sorted(images, key=str))} test images, measured "
        "when the trace was extracted (each variant's dense model re-measured the same way), ± one binomial "
        "standard error sqrt(p (1 - p) / N) in points. Wall time: the run's "
        "training time up to the selected checkpoint (for `native`, its retraining only).",
        "",
        _machines(trace),
        "",
        *_commands(trace),
    ]
    return "\n".join(lines)


def _commands(trace: Trace) -> list[str]:
    """The command that trained each variant's model, where the trace records it (`winosim trace` does since
    the recipe's `train_command`; native's is its retraining from the spatial dense model)."""
    recorded = [(v.name, dict(v.recipe).get("train_command")) for v in trace.variants]
    if not any(command for _, command in recorded):
        return []
    return [
        "Training commands:",
        "",
        *(f"- `{name}`: `{command or 'not recorded'}`" for name, command in recorded),
        "",
    ]


def _trained_in(recipe: dict[str, object]) -> str | None:
    """Where and in which precision a variant's training steps ran (`trained_in`, one entry per change of machine
    or precision), or None where the trace does not record it."""
    segments = recipe.get("trained_in")
    keys = {"from_step", "machine", "precision"}
    if not isinstance(segments, list) or not segments:
        return None
    if not all(isinstance(s, dict) and keys <= s.keys() and isinstance(s["from_step"], int) for s in segments):
        return None  # not written by `winosim trace`: the card falls back to `trained_on`
    parts = [
        f"{segment['machine']} in {segment['precision']}"
        + (f" from step {segment['from_step']:,}" if segment["from_step"] else "")
        for segment in segments
    ]
    if segments[0]["from_step"]:
        parts.insert(0, f"steps before {segments[0]['from_step']:,}: not recorded")
    return ", then ".join(parts)


def _machines(trace: Trace) -> str:
    """Where each variant was trained (and in which precision, where recorded) and extracted, as the checkpoints
    and the extraction recorded it."""
    recorded = [
        (v.name, _trained_in(dict(v.recipe)) or dict(v.recipe).get("trained_on"), dict(v.recipe).get("extracted_on"))
        for v in trace.variants
    ]
    if not any(trained or extracted for _, trained, extracted in recorded):
        return "Machines: not recorded in this trace (made before they were; traces/README.md says where it ran)."
    return (
        "Machines: "
        + "; ".join(
            f"`{name}` trained on {trained or 'not recorded'}, extracted on {extracted or 'not recorded'}"
            for name, trained, extracted in recorded
        )
        + "."
    )


def claim_table(trace: Trace) -> str:
    frame = multiplies_frame(trace, count_trace(trace), 64, 16)
    lines = [
        "| scope | Winograd-ReLU multiplies / image | vs dense spatial | vs dense Winograd | vs pruned spatial "
        "| vs native pruned Winograd |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for scope, label in (("winograd_layers", "Winograd layers"), ("total", "whole network")):
        rows = frame[frame.scope == scope].set_index("method")["multiplies_per_image"]
        wr = float(rows["winograd_relu"])
        methods = ("dense_spatial", "dense_winograd", "pruned_spatial", "native_winograd")
        ratios = {m: float(rows[m]) / wr for m in methods}
        lines.append(
            f"| {label} | {wr:,.0f} | {ratios['dense_spatial']:.2f}x | {ratios['dense_winograd']:.2f}x | "
            f"{ratios['pruned_spatial']:.2f}x | {ratios['native_winograd']:.2f}x |"
        )
        low, high = PAPER_ADVANTAGE
        baselines = [ratios["pruned_spatial"], ratios["native_winograd"]]
        verdicts.append(
            f"- {label}: >= {PAPER_REDUCTION:g}x fewer multiplies than dense spatial: "
            f"**{'yes' if ratios['dense_spatial'] >= PAPER_REDUCTION else 'no'}** ({ratios['dense_spatial']:.2f}x); "
            f"at least {low:g}x fewer than both pruned baselines (the paper: {low:g}-{high:g}x): "
            f"**{'yes' if min(baselines) >= low else 'no'}** ({baselines[0]:.2f}x pruned spatial, "
            f"{baselines[1]:.2f}x native)"
        )
    lines += ["", *verdicts, ""]
    searched = all(_search(v) is not None for v in trace.variants)
    lines.append(
        "Exact zero-skipping multiplies from the masks, per image over the trace's sample images. "
        + (
            "Each variant is at its own density (the density search below), as in the paper's comparison. "
            if searched
            else "The variants were NOT chosen by a density search: the comparison is at the densities they have. "
        )
        + "The stem, 1x1 shortcuts and FC layers stay spatial and unpruned in every method (they are in "
        "`whole network`)."
    )
    return "\n".join(lines) + "\n"


PAPER_FIGURES = {"vgg_nagadomi": "10.4x (VGG-nagadomi, CIFAR-10)", "resnet18_cifar": "10.8x (ResNet-18, ImageNet)"}
"""The paper's multiply reduction for the network a trace was trained from (paper.md section 5)."""

REFERENCES = (
    ("dense_spatial", "dense spatial"),
    ("dense_winograd", "dense Winograd"),
    ("pruned_spatial", "pruned spatial"),
    ("native_winograd", "native pruned Winograd"),
)


def _reductions(trace: Trace) -> dict[str, tuple[float, float]]:
    """Winograd-ReLU's multiply reduction against each reference: (Winograd layers, whole network)."""
    frame = multiplies_frame(trace, count_trace(trace), 64, 16)
    per_scope = []
    for scope in ("winograd_layers", "total"):
        rows = frame[frame.scope == scope].set_index("method")["multiplies_per_image"]
        per_scope.append({m: float(rows[m]) / float(rows["winograd_relu"]) for m, _ in REFERENCES})
    return {m: (per_scope[0][m], per_scope[1][m]) for m, _ in REFERENCES}


def _accuracy(trace: Trace, method: str) -> str:
    variant = next((v for v in trace.variants if v.method == method), None)
    return "?" if variant is None or variant.accuracy is None else f"{100 * variant.accuracy:.2f}%"


def readme_claims(traces: list[tuple[str, Trace]]) -> str:
    """README.md's claim table: per trained trace (file name, trace), Winograd-ReLU's test accuracy against
    its dense model's, then its multiply reduction against each reference (Winograd layers / whole network)
    beside the paper's figures (paper.md section 5, which does not say which dense reference it used)."""
    wr = {name: next(v for v in trace.variants if v.method == "winograd_relu") for name, trace in traces}
    reductions = {name: _reductions(trace) for name, trace in traces}
    columns = [f"{trace.network} (`{name}`)" for name, trace in traces]
    low, high = PAPER_ADVANTAGE
    paper_dense = ", ".join(dict.fromkeys(PAPER_FIGURES.get(t.network, "?") for _, t in traces))
    lines = [
        "| Winograd-ReLU | paper | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
        "| test accuracy (its dense model) | less than 0.1 point lost | "
        + " | ".join(
            f"{100 * (wr[n].accuracy or 0):.2f}% ({100 * (wr[n].dense_accuracy or 0):.2f}%)" for n, _ in traces
        )
        + " |",
        "| the baselines' test accuracy (pruned spatial / native) | about Winograd-ReLU's | "
        + " | ".join(" / ".join(_accuracy(trace, m) for m in ("spatial", "native")) for _, trace in traces)
        + " |",
    ]
    for method, label in REFERENCES:
        paper = paper_dense if method.startswith("dense") else f"{low:g}-{high:g}x"
        cells = []
        for name, _ in traces:
            layers, network = reductions[name][method]
            bar = PAPER_REDUCTION if method.startswith("dense") else low
            verdict = "yes" if min(layers, network) >= bar else ("Winograd layers only" if layers >= bar else "no")
            cells.append(f"{layers:.1f}x / {network:.1f}x (**{verdict}**)")
        lines.append(f"| fewer multiplies than {label} | {paper} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reductions: Winograd layers / whole network, exact zero-skipping multiplies per image "
        f"(`analyses/out/card-*.md`); **yes** where both reach the paper's bar ({PAPER_REDUCTION:g}x against the "
        f"dense references, {low:g}x against the pruned baselines).",
        "",
    ]
    return "\n".join(lines)


def _search(v: Variant) -> dict[str, Any] | None:
    search = dict(v.recipe).get("density_search")
    return dict(search) if isinstance(search, dict) else None


def search_table(trace: Trace) -> str:
    lines = [
        "| variant | density | test accuracy | vs dense (points) | test images | selected |",
        "|---|---|---|---|---|---|",
    ]
    rules = set()
    for v in trace.variants:
        search = _search(v)
        if search is None:
            lines.append(f"| `{v.name}` | (no density search recorded) | | | | |")
            continue
        rules.add(search["rule"])
        dense = search["points"][0]["accuracy"]
        for p in search["points"]:
            chosen = "**yes**" if p["checkpoint"] == search["selected_checkpoint"] else ""
            delta = 100 * (p["accuracy"] - dense)
            lines.append(
                f"| `{v.name}` | {p['density']:.2f} | {100 * p['accuracy']:.2f}% | {delta:+.2f} "
                f"| {p['test_images']} | {chosen} |"
            )
        if not search["complete"]:
            lines.append(f"| `{v.name}` | (schedule {search['schedule']} not finished) | | | | |")
    lines += [
        "",
        f"Rule: {'; '.join(sorted(rules)) or 'none recorded'}. Accuracies here are the ones measured at the end of "
        "each training phase on the run's test subset (the selection's input), not the re-measured ones above.",
        "",
    ]
    return "\n".join(lines)


def curve_figure(trace: Trace, title: str) -> Any:
    figure = new_figure(6.4, 4.0)
    axes = figure.add_subplot(1, 1, 1)
    for v in trace.variants:
        search = _search(v)
        if search is None:
            continue
        points = search["points"]
        xs = [p["density"] for p in points]
        ys = [100 * p["accuracy"] for p in points]
        (line,) = axes.plot(xs, ys, marker="o", label=f"{v.name} ({v.method})")
        chosen = next(p for p in points if p["checkpoint"] == search["selected_checkpoint"])
        axes.plot([chosen["density"]], [100 * chosen["accuracy"]], marker="*", markersize=14, color=line.get_color())
        floor = 100 * points[0]["accuracy"] - search["within_points"]
        axes.axhline(floor, linestyle=":", linewidth=0.8, color=line.get_color())
    axes.set_xlim(1.02, 0.0)
    axes.set_xlabel("weight density of the Winograd layers (pruning schedule, left to right)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return figure


CLAIMS_HEADER = "| Winograd-ReLU | paper |"
"""How README.md's claim table begins (its trace columns follow)."""
VARIANTS_HEADER = "| variant | method |"
"""How a variant table begins."""


def replace_table(text: str, table: str, header_prefix: str, after: str = "") -> str:
    """`text` with one Markdown table replaced by `table`: the first table (a run of lines starting with "|")
    whose header row starts with `header_prefix`, after the first line starting with `after` (anywhere when
    empty). ValueError, naming what is missing, when there is no such line or table."""
    new = table.strip("\n").split("\n")
    if not new[0].startswith(header_prefix) or not all(line.startswith("|") for line in new):
        raise ValueError(f"not a Markdown table beginning {header_prefix!r}: {new[0]!r}")
    lines = text.split("\n")
    start = 0
    if after:
        found = next((i for i, line in enumerate(lines) if line.startswith(after)), None)
        if found is None:
            raise ValueError(f"no line beginning {after!r}")
        start = found
    for i in range(start, len(lines)):
        if lines[i].startswith(header_prefix) and (i == 0 or not lines[i - 1].startswith("|")):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return "\n".join(lines[:i] + new + lines[end:])
    where = f" after {after!r}" if after else ""
    raise ValueError(f"no table beginning {header_prefix!r}{where}")


def readme_updates(root: Path, trained: list[tuple[Path, Trace]]) -> dict[Path, str]:
    """The new text of README.md (claim table) and traces/README.md (each trained trace's variant table, under
    its "### `<name>`:" heading) for these traces, for each file whose text changes."""
    readme, traces_readme = root / "README.md", root / "traces" / "README.md"
    texts = {path: path.read_text(encoding="utf-8") for path in (readme, traces_readme)}
    claims = readme_claims([(path.name, trace) for path, trace in trained]).split("\n\n")[0]
    new = {readme: replace_table(texts[readme], claims, CLAIMS_HEADER)}
    text = texts[traces_readme]
    for path, trace in trained:
        table = variant_table(trace).split("\n\n")[0]
        text = replace_table(text, table, VARIANTS_HEADER, after=f"### `{path.name}`:")
    new[traces_readme] = text
    return {path: text for path, text in new.items() if text != texts[path]}


def _update_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--update-readmes",
        action="store_true",
        help="also put the new claim table into README.md and the variant tables into traces/README.md",
    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0], _update_flag)
    trained = [(path, trace) for path, trace in shipped_traces(args.traces) if not trace.provenance.synthetic]
    claims = readme_claims([(path.name, trace) for path, trace in trained])
    write_markdown(args.out / "claims.md", "# The paper's claims on the trained traces\n\n" + claims)
    if args.update_readmes:
        try:
            updates = readme_updates(ROOT, trained)
        except ValueError as error:
            raise SystemExit(f"trace_cards.py: cannot update the READMEs: {error}") from None
        for path, text in updates.items():
            write_markdown(path, text)
            print(f"updated {path.relative_to(ROOT)}")
    for path, trace in trained:
        stem = f"card-{path.stem}"
        parts = [
            header(f"Trace card: {path.stem}", path, trace),
            "## Variants",
            "",
            variant_table(trace),
            "## The paper's claim on this model",
            "",
            claim_table(trace),
            "## Density search",
            "",
            search_table(trace),
        ]
        if any(_search(v) is not None for v in trace.variants):
            parts += [f"![accuracy against density]({stem}-curve.png)", ""]
            title = f"{path.stem}: accuracy along the pruning schedule (star: selected)"
            save_png(curve_figure(trace, title), args.out / f"{stem}-curve.png")
        write_markdown(args.out / f"{stem}.md", "\n".join(parts))


if __name__ == "__main__":
    main()
