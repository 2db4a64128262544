"""One runner per lens: call the lens, collect its tables, headline figures, plots and how to read them.

Runners hold no science: they call the public lens functions, pick the headline numbers from
their tables, and say in one or two sentences how to read each plot. Every runner is wrapped by
:func:`run_lens`, which turns an exception into ``status="failed"`` with the reason, so one lens
that cannot handle a model never stops the others.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
from torch import nn

from netxray.capture.graph import unwrap_model
from netxray.measures.symmetry import format_power_of_ten
from netxray.report import plots as P
from netxray.report._compare import (  # noqa: F401  (re-exported: they lived here)
    _COMPARERS,
    _WORDED,
    TITLES,
    _alignment_numbers,
    _closest_pair,
    _compare_modularity,
    _compare_nonlinearity,
    _compare_parameters,
    _compare_symmetry,
    _layout,
    _reason,
    compare_lens,
)
from netxray.report.html import ItemizedNote, figure_to_plot
from netxray.report.results import LensResult, ScanOptions

__all__ = ["TITLES", "compare_lens", "default_probe_layers", "run_lens"]


_LENS_MODULES = {
    "nonlinearity": "netxray.lenses.nonlinearity",
    "modularity": "netxray.lenses.modularity",
    "parameters": "netxray.lenses.parameters",
    "symmetry": "netxray.lenses.symmetry",
}


def _lens_module(lens: str) -> Any:
    return importlib.import_module(_LENS_MODULES[lens])


def run_lens(lens: str, model: nn.Module, data: Any, opts: ScanOptions) -> LensResult:
    """Run one lens; any exception becomes a failed :class:`LensResult` that says why."""
    t0 = time.perf_counter()
    title = TITLES[lens]
    try:
        _lens_module(lens)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("netxray"):
            return LensResult(lens, title, status="unavailable",
                              reason=f"the {lens} lens ({_LENS_MODULES[lens]}) is not installed")  # fmt: skip
        raise
    try:
        res = _RUNNERS[lens](model, data, opts)
    except Exception as exc:  # one lens failing is a row in the report, not a crash of the scan
        res = LensResult(lens, title, status="failed", reason=_reason(exc))
        res.howto = [_HOWTO_FAILED]
    res.seconds = time.perf_counter() - t0
    return res


_HOWTO_FAILED = (
    "The other lenses ran normally; a lens fails when the model has a layer or a structure "
    "it cannot read (see the reason), or the data lacks what it needs (e.g. class labels)."
)


def _extra(opts: ScanOptions, lens: str) -> dict[str, Any]:
    return dict(opts.extra.get(lens, {}))


_TYPED = re.compile(r"^(?P<name>.+?) \((?P<type>[^()]*)\): (?P<reason>.*)$", re.S)


def _typed_items(lines: list[str]) -> list[tuple[str, str]]:
    """``"path (Type): reason"`` lines (the lenses' lists of what they left out) as
    ``(path, "Type — reason")`` pairs, so that the report can group them by reason."""
    out = []
    for line in lines:
        m = _TYPED.match(str(line))
        out.append((m["name"], f"{m['type']} — {m['reason']}") if m else (str(line), "see the text"))
    return out


_PATH = re.compile(r"^[\w.#:<>\[\]-]+$")  # a module path or site name: no spaces


def _named_items(lines: list[str]) -> list[tuple[str, str]]:
    """``"path: reason"`` lines as ``(path, reason)`` pairs; a line that does not start with a
    module path is a remark about the whole model, ``("(model)", line)``."""
    out = []
    for line in lines:
        name, sep, reason = str(line).partition(": ")
        out.append((name, reason) if sep and _PATH.match(name) else ("(model)", str(line)))
    return out


def inputs_of(n: Any, total: Any, data: Any = None) -> str | None:
    """``"120 of 120 images"``: the inputs a lens ran on, of those the data holds, in the data's
    unit (images, texts, else samples)."""
    if n is None:
        return None
    unit = _unit(data)
    return f"{n} of {total} {unit}" if total is not None else f"{n} {unit}"


def _unit(data: Any) -> str:
    """What one sample of ``data`` is, for a reader: images, texts or samples."""
    if hasattr(data, "measured"):
        data = data.test  # the same kind of sample as the measured split, without building it
    unit = getattr(data, "unit", None)
    return unit if isinstance(unit, str) else "samples"


def _fmt_range(values: pd.Series) -> Any:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    lo, hi = int(v.min()), int(v.max())
    return lo if lo == hi else f"{lo}–{hi}"


# --------------------------------------------------------------------------- lens 1


def _site_status_item(site: str, status: str, error: str, d: Any, n: Any) -> tuple[str, str]:
    """A non-ok signature site as a (name, reason) item of the grouped note. Under-determined
    sites carry their width in the name, so one reason groups them all (their messages differ
    only by d)."""
    if status == "degenerate" or not error:
        return site, status
    if status == "under_determined":
        return (f"{site} (d = {d})", f"under_determined: n = {n} samples <= d features: the covariances "
                "are rank-deficient and the score is biased towards 1 (use more samples)")  # fmt: skip
    return site, f"{status}: {error}"


def _run_nonlinearity(model: nn.Module, data: Any, opts: ScanOptions) -> LensResult:
    from netxray.lenses.nonlinearity import nonlinearity_signature, plot_signatures

    kw: dict[str, Any] = {"seed": opts.seed, "batch_size": opts.batch_size, "device": opts.device,
                          "null_baseline": True}  # fmt: skip
    kw.update(_extra(opts, "nonlinearity"))
    df = nonlinearity_signature(model, data, opts.n_samples, **kw)
    meta = df.attrs.get("meta", {})
    s = dict(df.attrs.get("summary", {}))
    summary: dict[str, Any] = {
        "estimator": meta.get("estimator"),
        "sites": int(len(df)),
        "sites ok (in the statistics)": s.get("n_ok", int(len(df))),
        "left out": s.get("left_out") or "none",
        "mean affinity": s.get("mean"),
        "null mean (rotated input)": s.get("null_mean"),
        "min": s.get("min"),
        "max": s.get("max"),
        "n": inputs_of(meta.get("n"), meta.get("n_total"), data),
        "samples per site": _fmt_range(df["n"]) if "n" in df else None,
        "d": _fmt_range(df["d"]) if "d" in df else None,
        "seed": opts.seed,
        "status_counts": s.get("status_counts", {}),
    }
    res = LensResult("nonlinearity", TITLES["nonlinearity"], tables={"signature": df}, summary=summary)
    if s.get("no_result"):  # no site scored: not "ok", whatever else ran (SPEC: ok means a number)
        res.status, res.reason = "no_result", str(s["no_result"])
    res.howto = [
        "Each point is one activation call, in execution order: its affinity score ρ_aff ∈ [0, 1] is 1 "
        "when the activation acts as an affine map on the inputs it actually receives and falls the "
        "more non-linearly it is used. The dashed line is the score of a rotated copy of the same "
        "input (an exactly linear map at the same n and d): in high dimension the estimator is biased "
        "low, so read each score against that baseline, and compare models only under the same "
        f"estimator, n and d (here {meta.get('estimator')}: {summary['samples per site']} samples per "
        f"site from {summary['n']}, d = {summary['d']})."
    ]
    not_observed = list(df.attrs.get("summary", {}).get("not_observed", []))
    if not_observed:
        res.notes.append(ItemizedNote("Not in the signature", _typed_items(not_observed), noun="modules"))
    if len(df) == 0:
        res.notes.append("No activation call was observed: the model has no activation modules or "
                         "functional activations, so its signature is empty (a linear model).")
    else:
        if s.get("note"):
            res.notes.append(
                s["note"][0].upper() + s["note"][1:] + ". Only 'ok' sites enter the mean, min and max; "
                "see the status and error columns."
            )
        bad = df[~df["status"].isin(["ok"])]
        if len(bad):
            err = bad["error"].fillna("").astype(str) if "error" in bad else pd.Series("", index=bad.index)
            dims = bad["d"] if "d" in bad else pd.Series("?", index=bad.index)
            n_used = s.get("n", df["n"].iloc[0] if "n" in df and len(df) else "?")
            res.notes.append(ItemizedNote(
                f"Sites with a non-ok status, out of {len(df)}",
                [_site_status_item(site, st, e, d, n_used) for site, st, e, d in
                 zip(bad["site"].astype(str), bad["status"].astype(str), err, dims, strict=True)],
                noun="sites",
                detail="'degenerate': a constant output (a dead unit), scored 1.0 as in the reference; "
                "'under_determined' and 'too_few_samples': scored, but left out of the statistics; "
                "the others have no score; see the status and error columns of the table",
            ))  # fmt: skip
        res.plots.append(figure_to_plot(
            plot_signatures(df), "Non-linearity signature",
            "Affinity score of every activation call in execution order; dashed: null baseline "
            "(rotated input, same n and d). Many sites: the axis names each stage (sites grouped by "
            "module-path prefix; faint lines between stages).",
        ))  # fmt: skip
    return res


# --------------------------------------------------------------------------- lens 2


def default_probe_layers(model: nn.Module, data: Any = None) -> list[str]:
    """Layers the modularity curve probes by default: :func:`netxray.capture.natural_probes`.

    Built-in models: their natural probes. Any other model: the stem, every repeated block and
    the pre-head, read from its graph recorded on two samples of ``data`` (required then).
    """
    from netxray.capture.probes import natural_probes

    return list(natural_probes(model, _example(data)))


def _graph_notes(model: nn.Module, data: Any) -> list[str]:
    """What the model graph could not follow, said in the report (never a silent 'ok')."""
    from netxray.capture.graph import record_graph

    example = _example(data)
    if example is None:
        return []
    try:
        notes = record_graph(model, example).notes
    except Exception as exc:
        return [f"The model graph could not be recorded: {_reason(exc)}."]
    return [f"The model graph could not follow everything: {note}." for note in notes]


def _example(data: Any) -> Any:
    """Two samples of ``data`` (a batch the model's graph is recorded on), None if unreadable."""
    from netxray.capture import as_indexable

    if data is None:
        return None
    try:
        indexable = as_indexable(data)
    except (TypeError, ValueError):
        return None
    if indexable is None or not len(indexable):
        return None
    example, _ = indexable.take(torch.arange(min(2, len(indexable))))
    return example


def _run_modularity(model: nn.Module, data: Any, opts: ScanOptions) -> LensResult:
    from netxray.lenses.modularity import (
        modularity_curve,
        plot_modularity_curve,
        redundant_layers,
    )

    extra = _extra(opts, "modularity")
    tol = extra.pop("tol", None)
    layers = opts.layers
    auto = isinstance(layers, str) and layers == "auto"
    kw: dict[str, Any] = {"n": opts.modularity_n, "k": opts.k, "repeats": opts.repeats, "seed": opts.seed,
                          "batch_size": opts.batch_size, "device": opts.device}  # fmt: skip
    kw.update(extra)
    curve = modularity_curve(model, data, layers, **kw)
    red = redundant_layers(curve, tol)
    meta = curve.attrs.get("meta", {})
    s = dict(curve.attrs.get("summary", {}))
    redundant = list(red.loc[red["redundant"], "layer"])
    suggestion, removable, kept = _pruning_suggestion(model, redundant, _example(data))
    ok_rows = curve[curve["status"] == "ok"]
    q_max = float(ok_rows["q_max"].iloc[-1]) if len(ok_rows) and "q_max" in ok_rows else None
    q_rel = float(ok_rows["q_rel_mean"].iloc[-1]) if len(ok_rows) and "q_rel_mean" in ok_rows else None
    n_classes = meta.get("n_classes")
    summary: dict[str, Any] = {
        "layers": int(len(curve)),
        "layers ok (in the statistics)": s.get("n_ok", int(len(curve))),
        "left out": s.get("left_out") or "none",
        "Q first layer": s.get("q_first"),
        "Q last layer": s.get("q_last"),
        "Q/Q_max last layer": q_rel,
        f"ceiling Q_max ({n_classes} classes)": q_max,
        "peak layer": s.get("q_peak_layer"),
        "redundant layers": redundant,
        "prunable": removable,
        "n": f"{meta.get('n')} per subset of {inputs_of(meta.get('n_available'), None, data)}",
        "k": meta.get("k"),
        "repeats": meta.get("repeats"),
        "seed": opts.seed,
    }
    res = LensResult("modularity", TITLES["modularity"], tables={"curve": curve, "redundancy": red},
                     summary=summary)  # fmt: skip
    if not (curve["status"] == "ok").any():
        reasons = curve["error"].dropna().astype(str).unique().tolist() if "error" in curve else []
        res.status = "no_result"
        res.reason = (f"no probed layer could be measured ({len(curve)} layers)"
                      + (f": {reasons[0]}" if reasons else ""))  # fmt: skip
    for key in ("subset_note", "singleton_note"):
        if meta.get(key):
            note = meta[key]
            res.notes.append(note[0].upper() + note[1:] + ".")
    if not auto:
        res.notes.append(f"Probed layers given by the user: {', '.join(map(str, layers))}.")
    elif getattr(unwrap_model(model), "netxray_config", None) is None:
        res.notes.append(
            "Not a built-in netxray model: the curve probes the layers read from its graph (one "
            f"recorded forward pass): stem, every repeated block and the pre-head ({len(curve)} "
            "layers); pass layers=[...] (or --layers) to choose others."
        )
        res.notes += _graph_notes(model, data)
    res.howto = [
        "Q is the Newman modularity of a kNN cosine graph (k = "
        f"{meta.get('k')}) of each layer's features, with the true classes as communities, mean ± std "
        f"over {meta.get('repeats')} class-stratified subsets of n = {meta.get('n')} samples. Higher Q: "
        "the classes form separate clusters at that layer; near 0: no class structure. Q's ceiling "
        "Q_max = 1 − Σ_c (share of class c)² depends on the classes: "
        + (f"{q_max:.3f} for these {n_classes} classes, so read Q/Q_max (here {q_rel:.2f} at the last "
           "layer; 1 = perfectly separated). " if q_max is not None and q_rel is not None else
           "read Q/Q_max (1 = perfectly separated). ")
        + "A plateau (orange) or a drop (red) marks a layer that adds no class separation — a "
        "pruning candidate.",
        suggestion,
    ]
    if kept:
        res.notes.append(ItemizedNote("Redundant but not removable", kept, noun="layers"))
    bad = curve[curve["status"] != "ok"]
    if len(bad):
        res.notes.append(ItemizedNote("Layers that could not be measured",
                                      [(str(r.layer), str(r.error)) for r in bad.itertuples()]))  # fmt: skip
    res.plots.append(figure_to_plot(
        plot_modularity_curve(curve, red), "Modularity curve",
        "Q per probed layer with a ±1 std band; plateau and degradation layers are shaded. Many "
        "layers: the axis names each stage (layers grouped by module-path prefix).",
    ))  # fmt: skip
    return res


def _pruning_suggestion(
    model: nn.Module, redundant: list[str], example: Any = None
) -> tuple[str, list[str], list[tuple[str, str]]]:
    """The pruning sentence, the removable layers, and the redundant layers that cannot be removed
    with the reason (the report lists those as a note, grouped by reason, not in the sentence).
    ``example``: a batch the model graph is recorded on, for models that are not built-in."""
    if not redundant:
        return ("Pruning suggestion: none — every probed layer still raises Q, so each one "
                "contributes class separation."), [], []  # fmt: skip
    removable: list[str] = []
    kept: list[tuple[str, str]] = []
    try:
        from netxray.lenses.pruning import removable_layers

        table = removable_layers(model, redundant, example).set_index("layer")
        removable = [layer for layer in redundant if bool(table.loc[layer, "removable"])]
        kept = [(layer, str(table.loc[layer, "reason"])) for layer in redundant if layer not in removable]
    except Exception:  # not a built-in model, or the pruning lens is absent: no structural check
        shown = ", ".join(redundant[:6]) + (f" and {len(redundant) - 6} more (see the redundancy table)"
                                            if len(redundant) > 6 else "")  # fmt: skip
        return (f"Pruning suggestion: the redundant layers {shown} add no class separation; whether "
                "they can be removed depends on the architecture (shapes in and out must agree). "
                "Fine-tune after removing and compare accuracy."), [], []  # fmt: skip
    text = "Pruning suggestion: "
    if removable:
        shown = ", ".join(removable[:8]) + (f" and {len(removable) - 8} more" if len(removable) > 8 else "")
        text += (f"remove {shown} (plateau/degradation layers whose removal keeps the "
                 "shapes), fine-tune, and compare accuracy, parameters and FLOPs with the baseline — "
                 "`netxray prune` runs that study, including the control of pruning as many "
                 "non-redundant or random layers.")  # fmt: skip
    else:
        text += "no redundant layer can be removed structurally."
    if kept:
        text += f" {len(kept)} redundant layer(s) are not removable (listed below the plot with the reason)."
    return text, removable, kept


# --------------------------------------------------------------------------- lens 3


def _median_alpha(spectra: pd.DataFrame) -> float | None:
    ok = spectra[spectra["fit_status"] == "ok"]["alpha"] if len(spectra) else spectra
    return float(ok.median()) if len(ok) else None


def _alpha_band(spectra: pd.DataFrame, low: float = 2.0, high: float = 6.0) -> str | None:
    """``"12 of 20"``: the fitted layers whose power-law α lies in [low, high] (WeightWatcher's
    band for well-trained layers)."""
    if not len(spectra) or "alpha" not in spectra:
        return None
    ok = pd.to_numeric(spectra.loc[spectra["fit_status"] == "ok", "alpha"], errors="coerce").dropna()
    return f"{int(((ok >= low) & (ok <= high)).sum())} of {len(ok)}" if len(ok) else None


def _run_parameters(model: nn.Module, data: Any, opts: ScanOptions) -> LensResult:
    from netxray.lenses.parameters import (
        GLOBAL,
        node_strengths,
        plot_strengths,
        plot_weight_histograms,
        strength_fluctuation,
        weight_spectra,
        weight_stats,
    )

    stats = weight_stats(model, **_extra(opts, "parameters"))
    spectra = weight_spectra(model, device=opts.device)  # the SVDs on --device (one tensor at a time)
    strengths = node_strengths(model, example=_example(data))  # the recorded graph finds totals' links
    fluct = strength_fluctuation(strengths)
    glob = stats[stats["name"] == GLOBAL]
    g = glob.iloc[0] if len(glob) else None
    ssum = dict(strengths.attrs.get("summary", {}))
    nonfinite = int(pd.to_numeric(stats.loc[stats["name"] != GLOBAL, "n_nonfinite"], errors="coerce").sum())
    summary: dict[str, Any] = {
        "parameters": int(stats.attrs.get("meta", {}).get("n_params", 0)),
        "tensors": int((stats["name"] != GLOBAL).sum()),
        "weight mean": None if g is None else float(g["mean"]),
        "weight std": None if g is None else float(g["std"]),
        "excess kurtosis": None if g is None else float(g["kurtosis"]),
        "near-zero fraction": None if g is None else float(g["near_zero_frac"]),
        "non-finite values": nonfinite,
        "layers in strength graph": ssum.get("layers_mapped"),
        "median power-law α": _median_alpha(spectra),
        "layers with α in 2–6 (well-trained band)": _alpha_band(spectra),
    }
    res = LensResult("parameters", TITLES["parameters"],
                     tables={"weight_stats": stats, "node_strengths": strengths, "fluctuation": fluct,
                             "spectra": spectra},
                     summary=summary)  # fmt: skip
    res.howto = [
        "Weight statistics are per tensor (population std, excess kurtosis: 0 for a Gaussian, large "
        "for heavy tails) plus a global row over all weight tensors. Node strength reads each layer "
        "as a bipartite graph: a unit's in-strength is the sum of its incoming weights; the spread "
        "of strengths in a layer (its fluctuation) grows when a few units dominate. Non-finite "
        "values mean the training diverged.",
        "The spectra table reads each weight matrix (a convolution as out × in·k·k) through its "
        "singular values: spectral norm, stable rank (‖W‖_F²/‖W‖_2²) and α, the power-law exponent "
        "of the tail of the eigenvalues of WᵀW (continuous MLE, x_min by the minimal KS distance). "
        "Random, untrained matrices have no heavy tail (large α or a poor fit); WeightWatcher "
        "reports α between 2 and 6 for well-trained layers, so the card counts the layers in that "
        "band (α < 2: very heavy tail, often over-trained; α > 6: little learned structure).",
    ]
    if nonfinite:
        res.notes.append(f"{nonfinite} non-finite weight values (NaN/inf): the training diverged.")
    if ssum.get("not_mapped"):
        res.notes.append(ItemizedNote("Not in the strength graph", _typed_items(list(ssum["not_mapped"]))))
    if summary["tensors"] == 0:
        res.notes.append("The model has no parameters: no statistics, histograms or strengths.")
    try:
        res.plots.append(figure_to_plot(
            plot_weight_histograms(model), "Weight distributions",
            "Density of all weights (top) and of each weight tensor (bottom) on shared bins; with many "
            "tensors, one row per tensor coloured by log density.",
        ))  # fmt: skip
    except ValueError as exc:  # no weights, or none finite: the table still says what there is
        res.notes.append(f"No weight histogram: {str(exc).removeprefix('weight_histograms: ')}.")
    if len(strengths) and (strengths["status"] == "ok").any():
        res.plots.append(figure_to_plot(
            plot_strengths(strengths, kind="in"), "Node strengths",
            "First panel: |w| in-strength of the units of each layer (box plots; with many layers "
            "the median, 25–75 % and 5–95 % bands); second: the layer fluctuation (std of "
            "strengths) against depth.",
        ))  # fmt: skip
    return res


# --------------------------------------------------------------------------- lens 4


def _run_symmetry(model: nn.Module, data: Any, opts: ScanOptions) -> LensResult:
    from netxray.lenses.symmetry import covering_bounds, symmetry_group

    # the scan's own samples are the probe inputs of the permutation test (generated inputs
    # guess a size the model may not take, e.g. a timm ViT built for 32-pixel images)
    kw = {"device": opts.device} if opts.device is not None else {}
    group = symmetry_group(model, _example(data), **{**kw, **_extra(opts, "symmetry")})
    g = dict(group.attrs.get("summary", {}))
    tables: dict[str, pd.DataFrame] = {"group": group}
    summary: dict[str, Any] = {
        "status": g.get("status"),
        "family": g.get("family"),
        "permutable axes": g.get("n_axes"),
        "log10 |G|": g.get("log10_order"),
        "log10 permutations": g.get("log10_permutations"),
        "continuous dims (rescaling)": g.get("continuous_dims"),
        "parameters": g.get("n_params"),
    }
    res = LensResult("symmetry", TITLES["symmetry"], tables=tables, summary=summary)
    if g.get("readable") is False:
        # the structure could not be read at all (no forward pass could be recorded, or the axis
        # finder failed): the lens did not do its job on this model, and must not be "ok". A model
        # that was read but has no proven axis (an LSTM) is a finding, with its reasons listed.
        res.status, res.reason = "failed", str(g["status"])
    res.howto = [
        "The symmetry group counts the parameterizations that compute the same function: unit "
        "permutations within each layer (d! for d units), sign flips for odd activations (tanh); "
        "ReLU rescalings are continuous and counted as extra dimensions, not in |G|. "
        f"Here |G| = {format_power_of_ten(g.get('log10_order', float('nan')))}.",
    ]
    not_analysed = [str(x) for x in (g.get("not_analysed") or [])]
    if g.get("statement"):
        statement = str(g["statement"])
        listed = "not analysed: " + "; ".join(not_analysed)
        if not_analysed and listed in statement:  # the list follows as its own grouped note
            statement = statement.replace(listed, f"{len(not_analysed)} parts not analysed (listed below)")
        statement, _, fixed = statement.partition(_FIXED)
        res.notes.append(f"What was analysed: {statement}")
        if fixed:
            res.notes.append(ItemizedNote("Tensors fixed by every symmetry (output side)",
                                          [(t, "fixed by every symmetry") for t in fixed.split(", ")],
                                          noun="tensors"))  # fmt: skip
    if not_analysed:
        res.notes.append(ItemizedNote("Not analysed", _named_items(not_analysed), noun="parts"))
    bounds = None
    try:  # the lens refuses models it cannot bound (conv nets, an LSTM beside a Linear head)
        bounds = covering_bounds(model)
    except Exception as exc:
        why = _reason(exc).removeprefix("covering_bounds: ")
        res.notes.append(f"Covering bounds not computed: {why[:1].lower() + why[1:]}")
    if bounds is not None and len(bounds):
        tables["covering_bounds"] = bounds
        b = bounds.iloc[0]
        summary.update({
            "log10 N classical": float(b["classical_log10"]),
            "log10 N reduced": float(b["reduced_log10"]),
            "relative reduction": float(b["relative_reduction"]),
            "eps": float(b["eps"]),
            "B": float(b["B"]),
        })  # fmt: skip
        res.howto.append(
            "Covering bounds (SPEC §4.2, parameters in [−B, B] with B the largest weight magnitude, "
            f"ε = {float(b['eps']):g}): {b['verdict']}"
        )
        for note in bounds.attrs.get("summary", {}).get("notes", []):
            res.notes.append(f"Covering bound caveat: {note}")
    fig = P.symmetry_figure(group, tables.get("covering_bounds"))
    if fig is not None:
        res.plots.append(figure_to_plot(
            fig, "Symmetry per layer",
            "log10 d! of every permutable axis (with sign flips for odd activations)"
            + ("; right: the classical and permutation-reduced log10 covering bounds." if bounds is not None else "."),
        ))  # fmt: skip
    return res


_FIXED = "; tensors fixed by every symmetry (output side): "  # how the symmetry lens lists them


def _fmt_num(v: Any) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return "?"


_RUNNERS: dict[str, Callable[[nn.Module, Any, ScanOptions], LensResult]] = {
    "nonlinearity": _run_nonlinearity,
    "modularity": _run_modularity,
    "parameters": _run_parameters,
    "symmetry": _run_symmetry,
}
