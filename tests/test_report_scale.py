"""The report's plots at real scale: 10, 100 and 500 sites, layers and tensors.

Every per-layer plot is drawn from synthetic lens tables with realistic module paths
(``features.{i}.block.{j}.act``, as in a torchvision EfficientNet) and measured with matplotlib's
own renderer: no two visible tick labels of a figure may overlap, the axis must still carry
labels, and at scale they must name stages (groups of consecutive sites) rather than every
site. The hover slots that name each point in the HTML report are checked against the axes:
one per position, left to right, each naming its position.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
from torch import nn

from netxray._plotting import (
    PAGE_WIDTH,
    drawn_tick_labels,
    finish_figure,
    label_positions,
    row_slices,
    stage_groups,
)
from netxray.lenses.modularity import plot_modularity_curve, redundant_layers
from netxray.lenses.nonlinearity import plot_signatures
from netxray.lenses.parameters import plot_strengths, plot_weight_histograms
from netxray.report import plots as P
from netxray.report.html import ItemizedNote, figure_to_plot, notes_html

SIZES = (10, 100, 500)


def site_names(n: int) -> list[str]:
    """EfficientNet-like activation sites: 4 per block, 3 blocks per stage."""
    return [f"features.{i // 12}.{(i // 4) % 3}.block.{i % 4}.act" for i in range(n)]


def signature_table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    status = np.where(rng.random(n) < 0.1, "degenerate", "ok")
    return pd.DataFrame({
        "position": np.arange(n), "site": site_names(n), "op": "SiLU",
        "affinity": rng.uniform(0.6, 1.0, n), "null_affinity": rng.uniform(0.9, 1.0, n), "status": status,
    })  # fmt: skip


def curve_table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(n + 1)
    return pd.DataFrame({"layer": site_names(n), "q_mean": np.sort(rng.uniform(0, 0.9, n)),
                         "q_std": rng.uniform(0, 0.05, n), "status": "ok"})  # fmt: skip


def strengths_table(n: int, units: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(n + 2)
    layers = np.repeat([f"features.{i // 12}.{(i // 4) % 3}.block.{i % 4}.conv" for i in range(n)], units)
    signed = rng.normal(0, 1, len(layers))
    return pd.DataFrame({"layer": layers, "kind": "in", "unit": np.tile(np.arange(units), n), "status": "ok",
                         "signed": signed, "abs": np.abs(signed) + rng.uniform(0, 1, len(layers))})  # fmt: skip


def model_with_tensors(n: int) -> nn.Module:
    """n weight tensors named features.<stage>.<block>.weight (no biases)."""
    stages = OrderedDict()
    for s in range(-(-n // 5)):
        stages[str(s)] = nn.Sequential(*[nn.Linear(3, 3, bias=False) for _ in range(min(5, n - 5 * s))])
    return nn.Sequential(OrderedDict(features=nn.Sequential(stages)))


def symmetry_table(n: int) -> pd.DataFrame:
    sizes = np.arange(n) % 60 + 4
    from math import lgamma, log

    return pd.DataFrame({"axis": site_names(n), "size": sizes,
                         "log10_order": [lgamma(s + 1) / log(10) for s in sizes], "log10_sign_flips": 0.0})  # fmt: skip


def tick_boxes(fig, which: str = "xy") -> list[tuple[str, object]]:
    """(text, window extent) of every visible, non-empty tick label of the figure, as drawn."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        for axis in [a for a, w in ((ax.xaxis, "x"), (ax.yaxis, "y")) if w in which]:
            for t in drawn_tick_labels(axis):
                out.append((t.get_text(), t.get_window_extent(renderer)))
    return out


def assert_no_overlap(fig, what: str) -> list[str]:
    boxes = tick_boxes(fig)
    a = np.array([[b.x0, b.x1, b.y0, b.y1] for _, b in boxes]).reshape(-1, 4)
    # two boxes overlap when both their x and their y intervals overlap (touching is fine)
    ox = (a[:, None, 0] < a[None, :, 1]) & (a[None, :, 0] < a[:, None, 1])
    oy = (a[:, None, 2] < a[None, :, 3]) & (a[None, :, 2] < a[:, None, 3])
    both = ox & oy
    np.fill_diagonal(both, False)
    pairs = [(boxes[i][0], boxes[j][0]) for i, j in zip(*np.nonzero(both), strict=True) if i < j]
    assert not pairs, f"{what}: {len(pairs)} overlapping tick label pair(s), e.g. {pairs[:3]}"
    return [t for t, _ in boxes]


def _figures(n: int):
    sig = signature_table(n)
    curve = curve_table(n)
    yield "signature", plot_signatures(sig), sig["site"].tolist()
    yield "modularity curve", plot_modularity_curve(curve, redundant_layers(curve)), curve["layer"].tolist()
    st = strengths_table(n)
    yield "node strengths", plot_strengths(st), list(dict.fromkeys(st["layer"]))
    model = model_with_tensors(n)
    yield "weight histograms", plot_weight_histograms(model), [k for k, _ in model.named_parameters()]
    sym = symmetry_table(n)
    yield "symmetry", P.symmetry_figure(sym, None), sym["axis"].tolist()


@pytest.mark.parametrize("n", SIZES)
def test_no_tick_labels_overlap(n):
    for what, fig, names in _figures(n):
        texts = assert_no_overlap(fig, f"{what} at {n}")
        labelled = [t for t in texts if any(t in name or t.replace("…", "") in name for name in names)
                    or any(name.startswith(t.split("…")[0]) for name in names)]  # fmt: skip
        assert labelled, f"{what} at {n}: no tick label names a position ({texts[:5]})"
        if n >= 100:  # a stage per label, not one label for the whole model
            assert len(set(labelled)) >= 8, f"{what} at {n}: only {sorted(set(labelled))} label the axis"
        if n >= 100:  # at scale, the plots span the page
            assert fig.get_size_inches()[0] >= PAGE_WIDTH - 1e-9, f"{what} at {n}: narrower than the page"


@pytest.mark.parametrize("n", SIZES)
def test_labels_name_sites_or_stages(n):
    sig = signature_table(n)
    fig = plot_signatures(sig)
    texts = [t for t, _ in tick_boxes(fig, "x")]
    names = sig["site"].tolist()
    if n <= 40:  # every site has its own label
        assert sorted(texts) == sorted(names)
    else:  # stages: each label is a proper prefix of some site, shared by consecutive sites
        assert len(texts) < n
        for t in texts:
            members = [s for s in names if s.startswith(t + ".")]
            assert len(members) >= 2, f"label {t!r} is not a stage of several sites"


def test_hover_slots_name_every_position():
    n = 100
    sig = signature_table(n)
    plot = figure_to_plot(plot_signatures(sig), "signature")
    assert len(plot.regions) == n
    lefts = [r[0] for r in plot.regions]
    assert lefts == sorted(lefts), "slots run left to right in execution order"
    for (x, y, w, h, tip), site in zip(plot.regions, sig["site"], strict=True):
        assert tip.startswith(site + " (SiLU) — ρ_aff ")
        assert 0 <= x and x + w <= 1 + 1e-9 and 0 <= y and y + h <= 1 + 1e-9 and w > 0 and h > 0.3
    # neighbouring slots meet without overlapping
    for a, b in zip(plot.regions, plot.regions[1:], strict=False):
        assert b[0] >= a[0] + a[2] - 1e-9


def test_hover_slot_sits_over_its_point():
    """The slot of position i contains the pixel where the point at x = i is drawn."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    names = site_names(30)
    ax.plot(range(30), np.linspace(0, 1, 30))
    label_positions(ax, names)
    plot = figure_to_plot(fig, "t")
    for i in (0, 7, 29):
        px, _ = ax.transData.transform((i, 0.5))
        fx = px / fig.bbox.width
        x, _, w, _, tip = plot.regions[i]
        assert x <= fx <= x + w and tip == names[i]


def test_stage_groups_known_layouts():
    resnet = ["stem.relu"] + [f"layer{s}.{b}.relu#{c}" for s in (1, 2, 3, 4) for b in range(3) for c in (0, 1)]
    depth, groups = stage_groups(resnet, 8)
    assert depth == 1 and [g.label for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    depth, groups = stage_groups(resnet, 13)  # one more level fits: blocks
    assert depth == 2 and [g.label for g in groups][:3] == ["stem.relu", "layer1.0", "layer1.1"]
    bert = [f"bert.encoder.layer.{i}.{part}" for i in range(12)
            for part in ("attention.self.softmax", "intermediate.intermediate_act_fn")] + ["bert.pooler.activation"]
    depth, groups = stage_groups(bert, 13)
    assert depth == 4 and groups[0].label == "bert.encoder.layer.0" and groups[-1].label == "bert.pooler.activation"
    vit = [f"encoder.layers.encoder_layer_{i}.mlp.{j}" for i in range(12) for j in (1, 4)]
    assert [g.label for g in stage_groups(vit, 12)[1]][7] == "encoder.layers.encoder_layer_7"
    # one level fits but says nothing ("features"): the next one (42 stages) is used, thinned
    stages = [f"features.{i // 12}.{i % 12}" for i in range(500)]
    depth, groups = stage_groups(stages, 40)
    assert depth == 2 and len(groups) == 42 and groups[41].label == "features.41"
    # groups are contiguous runs that cover every position once
    for _, groups in (stage_groups(site_names(500), 40), stage_groups(resnet, 8)):
        assert groups[0].start == 0 and all(a.stop == b.start for a, b in zip(groups, groups[1:], strict=False))


def test_row_slices_cover_and_cut_at_stages():
    names = site_names(500)
    rows = row_slices(names, 160)
    assert rows[0].start == 0 and rows[-1].stop == 500
    assert all(a.stop == b.start for a, b in zip(rows, rows[1:], strict=False))
    assert all(0 < s.stop - s.start <= 160 for s in rows)
    for s in rows[1:]:  # cut where the stage (first two path parts) changes
        assert names[s.start].split(".")[:2] != names[s.start - 1].split(".")[:2]


def test_finish_figure_hides_colliding_labels_of_any_axis():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.set_xticks(range(200), [f"layer.{i}" for i in range(200)])  # drawn by hand, all colliding
    finish_figure(fig)
    texts = assert_no_overlap(fig, "hand-made ticks")
    assert 2 <= len(texts) < 200


def test_itemized_notes_are_grouped_by_reason():
    items = [(f"features.{i}.0", "no permutable axis proven through it") for i in range(58)]
    items += [(f"features.{i}.1", "grouped convolution") for i in range(3)]
    note = ItemizedNote("Not analysed", items, noun="layers")
    assert "features.57.0 (no permutable axis proven through it)" in note  # still the whole text
    out = notes_html([note, "plain caveat", "plain caveat"])
    assert "<b>58</b> layers: no permutable axis proven through it — show list" in out
    assert out.count("<details>") == 1  # three names are shown inline, 58 folded away
    assert "<b>3</b> layers: grouped convolution — <code>features.0.1</code>" in out
    assert out.count("plain caveat") == 1 and "×2" in out
    assert "Not analysed</b> (61 layers)." in out


def test_reasons_quoting_their_own_name_group_together():
    items = [(f"layer{i}.relu#0", f"no module 'layer{i}.relu#0' in ResNet") for i in range(5)]
    note = ItemizedNote("Redundant but not removable", items + [("fc", "the head")])
    assert note.groups() == [("no module '‹name›' in ResNet", [n for n, _ in items]), ("the head", ["fc"])]
    assert "<b>5</b> layers: no module &#x27;‹name›&#x27; in ResNet — show list" in notes_html([note])


@pytest.mark.parametrize("n", (10, 100))
def test_heat_maps_of_many_layers_or_models(n):
    """Square heat maps name rows and columns with the same helper: no overlap on either axis."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    from netxray.lenses.modularity import plot_layer_difference

    assert_no_overlap(plot_layer_difference(curve_table(n)), f"layer difference at {n}")
    names = [f"model_{i}" for i in range(n)]
    a = np.abs(np.random.default_rng(n).normal(size=(n, n)))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0)
    fig = P.distance_and_dendrogram(pd.DataFrame(a, index=names, columns=names),
                                    linkage(squareform(a), "average"))  # fmt: skip
    texts = assert_no_overlap(fig, f"distance matrix at {n}")
    assert sum(t in names for t in texts) >= min(n, 8)
