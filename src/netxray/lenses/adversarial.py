"""Adversarial inputs and what they do to class separation (SPEC §2.2, last point).

In-house FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018), untargeted, L∞ ball:

- FGSM: x' = clip(x + ε · sign(∇ₓ L(f(x), y))).
- PGD: x⁰ = x + U(−ε, ε) (seeded random start), xᵗ⁺¹ = Π_{B∞(x, ε)} clip(xᵗ + α · sign(∇ₓ L(f(xᵗ), y))),
  ``steps`` iterations, α = ε/4 by default.

L is the cross-entropy; ``clip`` keeps inputs in the data's range (its min and max by default).
The model is attacked in eval mode (its flags restored), and gradients are taken with respect to
the input only, so no parameter's ``.grad`` is touched.

:func:`adversarial_curves` measures the modularity curve of clean and adversarial versions of the
*same* stratified subsets, with the *true* labels as communities: the paper reports that
adversarial batches stay far below clean ones in the last layers (≤ 0.3 vs ≈ 0.85 on CIFAR-10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from netxray._meta import eval_mode, metadata, model_hash
from netxray.capture.inputs import _Indexable, model_device, model_dtype, place_model
from netxray.lenses.modularity import (
    _curve,
    _data_name,
    _default_layers,
    _figure,
    _indexable,
    _save,
    stratified_subsets,
)

__all__ = ["adversarial_curves", "fgsm", "pgd", "plot_adversarial"]

ATTACKS = ("fgsm", "pgd")


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor of inputs")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must be a 1-D tensor of labels matching the samples: got {tuple(getattr(y, 'shape', ()))} "
            f"for {x.shape[0]} samples"
        )
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")


def _grad_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        # summed loss: each sample's gradient is its own, whatever the batch size
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def _bounds(x: torch.Tensor, clamp: tuple[float, float] | None) -> tuple[float, float]:
    if clamp is None:
        return float(x.min()), float(x.max())
    lo, hi = float(clamp[0]), float(clamp[1])
    if not lo < hi:
        raise ValueError(f"clamp must be (low, high) with low < high, got {clamp!r}")
    return lo, hi


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    clamp: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Fast gradient sign method: x' = clip(x + ε · sign(∇ₓ CE(f(x), y))).

    ``clamp``: input range (default: the min and max of ``x``). Returns a new tensor on ``x``'s device.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2))
        >>> x, y = torch.zeros(3, 2), torch.tensor([0, 1, 0])
        >>> round(float((fgsm(m, x, y, 0.1, clamp=(-1, 1)) - x).abs().max()), 6)
        0.1
    """
    _check(model, x, y, eps)
    lo, hi = _bounds(x, clamp)
    dev = model_device(model)
    out = []
    with eval_mode(model):
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size].to(dev) if dev is not None else x[s : s + batch_size]
            yb = y[s : s + batch_size].to(xb.device)
            out.append((xb + eps * _grad_sign(model, xb, yb)).clamp(lo, hi).detach().to(x.device))
    return torch.cat(out).to(x.dtype)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    alpha: float | None = None,
    steps: int = 10,
    random_start: bool = True,
    seed: int = 0,
    clamp: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Projected gradient descent (L∞, untargeted): ``steps`` signed-gradient steps of size α
    (ε/4 by default) from a seeded uniform start in the ε-ball, each projected back onto the
    ball around x and the input range. Returns a new tensor on ``x``'s device; same seed, same
    result.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2))
        >>> x, y = torch.zeros(3, 2), torch.tensor([0, 1, 0])
        >>> bool(((pgd(m, x, y, 0.1, clamp=(-1, 1)) - x).abs() <= 0.1 + 1e-7).all())
        True
    """
    _check(model, x, y, eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    alpha = eps / 4 if alpha is None else float(alpha)
    lo, hi = _bounds(x, clamp)
    dev = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    out = []
    with eval_mode(model):
        for s in range(0, len(x), batch_size):
            x0 = x[s : s + batch_size]
            start = (torch.rand(x0.shape, generator=gen, dtype=x0.dtype) * 2 - 1) * eps
            x0 = x0.to(dev) if dev is not None else x0
            yb = y[s : s + batch_size].to(x0.device)
            xa = (x0 + start.to(x0.device)).clamp(lo, hi) if random_start else x0.clone()
            for _ in range(steps):
                xa = xa + alpha * _grad_sign(model, xa, yb)
                xa = torch.min(torch.max(xa, x0 - eps), x0 + eps).clamp(lo, hi).detach()
            out.append(xa.to(x.device))
    return torch.cat(out).to(x.dtype)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    dev = model_device(model)
    correct = 0
    with eval_mode(model), torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = x[s : s + batch_size]
            logits = model(xb.to(dev) if dev is not None else xb)
            correct += int((logits.argmax(1).cpu() == y[s : s + batch_size]).sum())
    return correct / max(len(x), 1)


class _KeywordInput(nn.Module):
    """``model(**{key: x})`` or ``model(*x)`` as ``f(x)``, for the attacks (never for the curve,
    whose layer names must stay the model's own)."""

    def __init__(self, model: nn.Module, key: str | int) -> None:
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x) if isinstance(self.key, int) else self.model(**{self.key: x})
        logits = getattr(out, "logits", out)
        return logits if isinstance(logits, torch.Tensor) else logits[0]


def _single_input(inputs: Any) -> tuple[str | int | None, torch.Tensor]:
    """(key, the tensor to attack): key None for a bare tensor, the name for a one-entry dict,
    0 for a one-element tuple. Anything else cannot be attacked: one clear error."""
    key: str | int | None = None
    x = inputs
    if isinstance(inputs, dict) and len(inputs) == 1:
        key, x = next(iter(inputs.items()))
    elif isinstance(inputs, tuple) and len(inputs) == 1:
        key, x = 0, inputs[0]
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = (f"{len(inputs)} inputs" if isinstance(inputs, (dict, tuple))
                else f"a {getattr(x, 'dtype', type(x).__name__)} tensor")  # fmt: skip
        raise TypeError(
            "adversarial_curves: the model must take one floating-point input tensor to be "
            f"attacked; the data gives {what} (token ids or several inputs cannot be attacked)"
        )
    return key, x


def _rebuild(key: str | int | None, x: torch.Tensor) -> Any:
    if key is None:
        return x
    return (x,) if isinstance(key, int) else {key: x}


def adversarial_curves(
    model: nn.Module,
    data: Any,
    attacks: str | Sequence[str] = ("fgsm", "pgd"),
    eps: float = 0.1,
    layers: str | Sequence[str] | None = "auto",
    n: int = 500,
    k: int = 3,
    repeats: int = 5,
    seed: int = 0,
    *,
    pgd_steps: int = 10,
    clamp: tuple[float, float] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Modularity curves of clean and adversarial inputs, with the true labels as communities.

    The same stratified subsets are attacked (FGSM and/or PGD with budget ε) and measured layer
    by layer like :func:`netxray.modularity_curve`. Returns a long DataFrame (the curve columns
    plus ``condition`` = "clean" | "fgsm" | "pgd"); ``attrs["summary"]`` has the accuracy on the
    measured samples under each condition, ``attrs["meta"]`` the settings.

    ``data``: labelled samples in any container (see
    :func:`netxray.capture.inputs.resolve_samples`) whose inputs are one float tensor; only the
    measured samples are loaded. ``clamp`` defaults to the min and max of those samples.
    ``device``: None (where the model is), ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Example:
        >>> from netxray.models import build_model
        >>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [8]})
        >>> x, y = torch.randn(40, 4), torch.arange(40) % 2
        >>> c = adversarial_curves(m, (x, y), attacks="fgsm", n=30, repeats=1)
        >>> list(c["condition"])
        ['clean', 'fgsm']
    """
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    bad = [a for a in attacks if a not in ATTACKS]
    if bad or not attacks:
        raise ValueError(f"unknown attack(s) {bad or attacks}; expected some of {list(ATTACKS)}")
    data_ = _indexable(data, "adversarial_curves")
    labels = data_.labels.detach().cpu().numpy()
    n_eff = min(int(n), len(labels))
    paths = _default_layers(model, layers)
    subsets = stratified_subsets(labels, n_eff, repeats, seed)
    # only the measured samples (the union of the subsets) are loaded and attacked
    pool = np.unique(np.concatenate(subsets))
    inputs, y_pool = data_.take(pool)
    # one input tensor, given bare or as the model's single keyword/positional argument
    key, x_pool = _single_input(inputs)
    y_pool = y_pool.to(torch.int64)
    lo_hi = _bounds(x_pool, clamp)
    run_model, target = place_model(model, device)
    attacked = run_model if key is None else _KeywordInput(run_model, key)
    dtype = model_dtype(run_model)
    if dtype is not None:
        x_pool = x_pool.to(dtype)  # attacked in the model's own dtype
    # moved to the model's device once: the attacks and the curves then stay there
    x_pool = x_pool.to(target)
    pool_subsets = [np.searchsorted(pool, s_) for s_ in subsets]  # positions in the pool
    frames, accs = [], {}
    for cond in ["clean", *attacks]:
        if cond == "clean":
            x_cond = x_pool
        elif cond == "fgsm":
            x_cond = fgsm(attacked, x_pool, y_pool, eps, clamp=lo_hi, batch_size=batch_size)
        else:
            x_cond = pgd(attacked, x_pool, y_pool, eps, steps=pgd_steps, seed=seed, clamp=lo_hi,
                         batch_size=batch_size)  # fmt: skip
        accs[cond] = _accuracy(attacked, x_cond, y_pool)
        rebuilt = _Indexable(_rebuild(key, x_cond), y_pool)
        frame = _curve(run_model, rebuilt, pool_subsets, paths, k=int(k),
                       batch_size=batch_size, device=target, progress=False)  # fmt: skip
        frame.insert(0, "condition", cond)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["summary"] = {f"acc_{c}": a for c, a in accs.items()}
    out.attrs["meta"] = metadata(
        lens="adversarial_curves", attacks=attacks, eps=eps, pgd_steps=pgd_steps, clamp=list(lo_hi),
        seed=seed, n=n_eff, k=int(k), repeats=int(repeats), data=_data_name(data),
        model_hash=model_hash(model), model=type(model).__name__,
    )  # fmt: skip
    return out


def plot_adversarial(
    curves: pd.DataFrame, *, relative: bool = False, path: str | None = None, ax: Any = None
) -> Any:
    """Clean vs adversarial modularity curves (mean ± std band); returns the Figure."""
    if "condition" not in curves:
        raise ValueError("curves must be the table of adversarial_curves (a 'condition' column)")
    fig, ax = _figure(ax, (6.0, 3.6))
    mean_col, std_col = ("q_rel_mean", "q_rel_std") if relative else ("q_mean", "q_std")
    names = None
    for cond, frame in curves.groupby("condition", sort=False):
        xs = np.arange(len(frame))
        m = frame[mean_col].to_numpy(float)
        s = frame[std_col].fillna(0).to_numpy(float)
        acc = curves.attrs.get("summary", {}).get(f"acc_{cond}")
        label = f"{cond} (acc {acc:.2f})" if acc is not None else str(cond)
        line = ax.plot(xs, m, marker="o", label=label)[0]
        ax.fill_between(xs, m - s, m + s, color=line.get_color(), alpha=0.2)
        names = list(frame["layer"])
    ax.set_xticks(range(len(names or [])), names or [], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Q / Q_max" if relative else "modularity Q (true labels)")
    ax.set_title("clean vs adversarial")
    ax.legend(fontsize=8)
    _save(fig, path)
    return fig
