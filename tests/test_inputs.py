"""One data contract for every lens: the same samples in any container give the same tables.

The resolver (netxray.capture.inputs) reads tensors, numpy arrays, TensorDataset, DataLoader,
dict batches, map-style and iterable datasets and streams of batches as numbered samples; every
lens draws its seeded subset by the same rule and batches it alike, so the tables must be equal
bit for bit — not merely close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from netxray.capture.inputs import (
    resolve_device,
    resolve_samples,
    select_indices,
)
from netxray.models import build_model

N, D, C = 90, 6, 3


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % C
    centers = torch.randn(C, D, generator=g) * 3
    return centers[y] + torch.randn(N, D, generator=g), y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model({"arch": "mlp", "input_shape": [D], "num_classes": C, "widths": [12, 10]})


class _Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


def _containers(x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
    """The same samples, in every container a user may hold."""
    return {
        "tensors": (x, y),
        "numpy": (x.numpy(), y.numpy()),
        "TensorDataset": TensorDataset(x, y),
        "DataLoader": DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True),
        "dict batches": [{"x": x[i : i + 20], "labels": y[i : i + 20]} for i in range(0, N, 20)],
        "batch list": [(x[i : i + 25], y[i : i + 25]) for i in range(0, N, 25)],
        "IterableDataset": _Stream(x, y),
        "dict of tensors": {"x": x, "labels": y},
    }


def _same(frames: dict[str, pd.DataFrame]) -> None:
    names = list(frames)
    ref = frames[names[0]]
    assert len(ref) > 0
    for name in names[1:]:
        pd.testing.assert_frame_equal(frames[name], ref, check_exact=True, obj=name)


def test_select_indices_is_one_rule_for_batches_and_streams():
    # drawing the keys batch by batch gives the same keys, hence the same kept samples
    full = np.random.default_rng(5).random(100)
    rng = np.random.default_rng(5)
    chunked = np.concatenate([rng.random(b) for b in (7, 30, 63)])
    assert np.array_equal(full, chunked)
    idx = select_indices(100, 10, seed=5)
    assert np.array_equal(idx, np.sort(np.argsort(full)[:10]))
    assert len(set(idx.tolist())) == 10 and np.all(np.diff(idx) > 0)


def test_signature_is_identical_in_every_container():
    from netxray import nonlinearity_signature

    x, y = _data()
    model = _model()
    tables = {
        name: nonlinearity_signature(model, data, n_samples=40, seed=3, batch_size=16)
        for name, data in _containers(x, y).items()
    }
    _same(tables)
    assert (tables["tensors"]["n"] == 40).all()


def test_modularity_curve_is_identical_in_every_container():
    from netxray import modularity_curve

    x, y = _data()
    model = _model()
    curves = {
        name: modularity_curve(model, data, n=45, repeats=2, seed=1, batch_size=16)
        for name, data in _containers(x, y).items()
    }
    _same(curves)
    assert (curves["tensors"]["status"] == "ok").all()


def test_adversarial_curves_are_identical_in_every_container():
    from netxray.lenses.adversarial import adversarial_curves

    x, y = _data()
    model = _model()
    curves = {
        name: adversarial_curves(model, data, attacks="fgsm", eps=0.2, n=45, repeats=2, seed=1)
        for name, data in _containers(x, y).items()
    }
    _same(curves)
    acc = {name: c.attrs["summary"] for name, c in curves.items()}
    assert all(a == acc["tensors"] for a in acc.values())


def test_scan_and_compare_are_identical_in_every_container():
    from netxray.report import compare_report, scan

    x, y = _data()
    model = _model()
    lenses = ("nonlinearity", "modularity")
    reps = {
        name: scan(model, data, lenses, n_samples=40, modularity_n=45, repeats=2, progress=False)
        for name, data in _containers(x, y).items()
    }
    for lens in lenses:
        _same({name: r[lens] for name, r in reps.items()})
    models = {"a": _model(0), "b": _model(1)}
    cmps = {
        name: compare_report(models, data, lenses, n_samples=40, modularity_n=45, repeats=2,
                             progress=False)  # fmt: skip
        for name, data in _containers(x, y).items() if name in ("tensors", "DataLoader", "dict batches")
    }
    for key in ("compare_nonlinearity", "compare_modularity"):
        _same({name: c.results[key].table for name, c in cmps.items()})
        assert all(c.results[key].status == "ok" for c in cmps.values())


def test_a_model_with_two_inputs_takes_a_tuple_of_inputs_plus_labels():
    from netxray import modularity_curve, nonlinearity_signature

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(D, 8), nn.Linear(2, 8)
            self.act = nn.Tanh()
            self.head = nn.Linear(8, C)

        def forward(self, xa, xb):
            return self.head(self.act(self.a(xa) + self.b(xb)))

    x, y = _data()
    x2 = torch.randn(N, 2)
    torch.manual_seed(0)
    model = TwoInputs()
    forms = {
        "tuple": ((x, x2), y),
        "dataset": TensorDataset(x, x2, y),
        "loader": DataLoader(TensorDataset(x, x2, y), batch_size=32),
        "batches": [((x[i : i + 30], x2[i : i + 30]), y[i : i + 30]) for i in range(0, N, 30)],
    }
    sigs = {k: nonlinearity_signature(model, v, n_samples=50) for k, v in forms.items()}
    _same(sigs)
    assert sigs["tuple"]["site"].tolist() == ["act"]
    curves = {k: modularity_curve(model, v, layers=["act"], n=40, repeats=2) for k, v in forms.items()}
    _same(curves)
    # the tanh site sees exactly a(x) + b(x2) of the chosen samples
    idx = select_indices(N, 50, seed=0)
    from netxray.capture import collect

    cap = collect(model, forms["tuple"], n_samples=50)
    expect = model.a(x[idx]) + model.b(x2[idx])
    assert torch.allclose(cap.sites["act"].inputs, expect.detach(), atol=1e-6)


def test_a_map_style_dataset_of_dicts_is_read_lazily():
    from netxray import modularity_curve

    class Tokens(torch.utils.data.Dataset):
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.ids = torch.randint(0, 30, (N, 7), generator=g)
            self.targets = (self.ids[:, 0] % 2).tolist()  # labels known without loading items
            self.loaded: list[int] = []

        def __len__(self) -> int:
            return N

        def __getitem__(self, i):
            self.loaded.append(i)
            return {"input_ids": self.ids[i], "labels": self.targets[i]}

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(30, 8)
            self.act = nn.ReLU()
            self.head = nn.Linear(8, 2)

        def forward(self, input_ids):
            return self.head(self.act(self.emb(input_ids).mean(1)))

    ds = Tokens()
    torch.manual_seed(0)
    model = Bag()
    curve = modularity_curve(model, ds, layers=["act"], n=30, repeats=1)
    assert curve["status"].tolist() == ["ok"]
    assert len(set(ds.loaded)) <= 30 + 2  # the subset and the probe batch, never all N
    ref = modularity_curve(model, {"input_ids": ds.ids, "labels": torch.tensor(ds.targets)},
                           layers=["act"], n=30, repeats=1)  # fmt: skip
    pd.testing.assert_frame_equal(curve, ref, check_exact=True)


def test_data_without_labels_is_refused_only_where_labels_are_needed():
    from netxray import modularity_curve, nonlinearity_signature

    x, _ = _data()
    model = _model()
    assert len(nonlinearity_signature(model, x, n_samples=30)) == 2
    assert len(nonlinearity_signature(model, TensorDataset(x), n_samples=30)) == 2
    with pytest.raises(ValueError, match="modularity_curve needs class labels"):
        modularity_curve(model, x)
    with pytest.raises(ValueError, match="needs class labels"):
        modularity_curve(model, [x[:40], x[40:]])


def test_bad_containers_get_one_clear_error():
    with pytest.raises(TypeError, match="data must be .*DataLoader"):
        resolve_samples(3.5)
    with pytest.raises(ValueError, match="labels do not match the samples"):
        resolve_samples((torch.zeros(5, 2), torch.zeros(4)))
    with pytest.raises(ValueError, match="some batches have labels"):
        resolve_samples([(torch.zeros(2, 2), torch.zeros(2)), torch.zeros(2, 2)])
    with pytest.raises(ValueError, match="yielded no samples"):
        resolve_samples(iter([]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_every_data_lens_runs_on_models_of_every_float_dtype(dtype):
    from netxray import modularity_curve, nonlinearity_signature
    from netxray.lenses.adversarial import adversarial_curves

    x, y = _data()
    model = _model().to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sig = nonlinearity_signature(model, (x, y), n_samples=60)
    curve = modularity_curve(model, (x, y), n=45, repeats=2)
    adv = adversarial_curves(model, (x, y), attacks="fgsm", eps=0.1, n=45, repeats=1)
    assert (sig["status"] == "ok").all() and (curve["status"] == "ok").all()
    assert (adv["status"] == "ok").all()
    assert sig["affinity"].between(0, 1).all()
    # statistics in float64 whatever the model's dtype; the model is untouched
    assert sig["affinity"].dtype == np.float64 and curve["q_mean"].dtype == np.float64
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == dtype
    from netxray.report import scan

    rep = scan(model, (x, y), ("parameters", "symmetry"), progress=False)  # the weight lenses too
    assert {n: r.status for n, r in rep.results.items()} == {"parameters": "ok", "symmetry": "ok"}
    ref = nonlinearity_signature(_model().to(torch.float64), (x, y), n_samples=60)
    # a half-precision model measures the same sites with nearby scores (rounding only)
    tol = {torch.float64: 1e-12, torch.float32: 1e-4}.get(dtype, 0.05)
    assert np.allclose(sig["affinity"], ref["affinity"], atol=tol)


def test_device_choice():
    assert resolve_device(None, _model()).type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cpu_model_runs_on_the_gpu_as_a_copy_with_the_same_numbers():
    from netxray import modularity_curve, nonlinearity_signature

    x, y = _data()
    model = _model().double()
    sig_cpu = nonlinearity_signature(model, (x, y), n_samples=60)
    sig_gpu = nonlinearity_signature(model, (x, y), n_samples=60, device="cuda")
    assert next(model.parameters()).device.type == "cpu"  # the user's model was not moved
    assert np.allclose(sig_cpu["affinity"], sig_gpu["affinity"], atol=1e-9)
    c_cpu = modularity_curve(model, (x, y), n=45, repeats=2)
    c_gpu = modularity_curve(model, (x, y), n=45, repeats=2, device="cuda")
    assert np.allclose(c_cpu["q_mean"], c_gpu["q_mean"], atol=1e-9)


def test_installing_netxray_keeps_the_torch_already_there(tmp_path):
    """``pip install netxray`` into an environment that has its own torch must not replace it.

    pip resolves the package (with its vision and hf extras) against this environment — torch
    as installed here (2.14.1 in the dev venv) — in dry-run mode: nothing is downloaded or
    installed, the local indexes pip is configured with are enough, and the report lists what
    it would install. Neither torch nor any CUDA wheel may be in that list.
    """
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip and setuptools are needed to resolve the package")
    root = Path(__file__).resolve().parents[1]
    report = tmp_path / "report.json"
    # --no-build-isolation: the package's metadata is built with this environment's setuptools
    # instead of a freshly downloaded one, which keeps the check offline and fast
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--quiet",
           "--report", str(report), f"{root}[vision,hf]"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    would = {i["metadata"]["name"].lower(): i["metadata"]["version"]
             for i in json.loads(report.read_text())["install"]}  # fmt: skip
    assert "netxray" in would
    replaced = sorted(n for n in would if n in ("torch", "torchvision", "triton") or n.startswith("nvidia-"))
    assert not replaced, f"installing netxray would replace {replaced} (torch here is {torch.__version__})"
    # the control: a package that excludes the installed torch is caught by the same check
    # (skipped when no other torch is on the local indexes)
    import re
    import shutil

    proj = tmp_path / "pinned"
    shutil.copytree(root / "src", proj / "src")
    shutil.copy(root / "README.md", proj / "README.md")
    text = (root / "pyproject.toml").read_text()
    installed = torch.__version__.split("+")[0]
    pinned = re.sub(r'"torch[^"]*"', f'"torch!={installed},!={torch.__version__}"', text, count=1)
    (proj / "pyproject.toml").write_text(pinned)
    cmd[-1] = str(proj)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"no torch other than {torch.__version__} on the local indexes for the control")
    would = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert "torch" in would


def test_a_report_shows_a_compact_summary_in_a_notebook():
    import html as html_lib
    from html.parser import HTMLParser

    from netxray.report import scan

    x, y = _data()
    rep = scan(_model(), (x, y), ("nonlinearity", "modularity", "parameters"), n_samples=40,
               modularity_n=45, repeats=2, options={"modularity": {"k": 500}}, progress=False)  # fmt: skip
    out = rep._repr_html_()  # what Jupyter calls to display the object

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            self.tags.append(tag)

    parser = Tags()
    parser.feed(out)
    assert "html" not in parser.tags and "script" not in parser.tags  # a fragment, no code
    assert parser.tags.count("img") == sum(len(r.plots) for r in rep.results.values()) > 0
    for res in rep.results.values():
        assert html_lib.escape(res.title) in out
    # the failed lens (k larger than the subsets) says why, in the summary itself
    assert rep.results["modularity"].status == "failed"
    assert "k must be" in out and "status-failed" in out
    assert len(out) < len(rep.to_html())  # the full document is to_html()
    assert rep.to_html().startswith("<!DOCTYPE html>")
    assert repr(rep).startswith("Report(") and len(repr(rep)) < 300
    # tables keep their metadata
    assert rep["nonlinearity"].attrs["meta"]["n"] == 40


def test_a_dataloader_holds_what_its_sampler_draws():
    from torch.utils.data import SubsetRandomSampler, WeightedRandomSampler

    from netxray import nonlinearity_signature

    x, y = _data()
    model = _model()
    part = np.arange(0, N, 2)  # e.g. a validation split drawn by index
    loader = DataLoader(TensorDataset(x, y), batch_size=8,
                        sampler=SubsetRandomSampler(np.random.default_rng(0).permutation(part).tolist()))  # fmt: skip
    s = resolve_samples(loader)
    assert len(s) == len(part) and torch.equal(s.labels, y[part])
    pd.testing.assert_frame_equal(
        nonlinearity_signature(model, loader, n_samples=20),
        nonlinearity_signature(model, (x[part], y[part]), n_samples=20), check_exact=True,
    )  # fmt: skip
    # any other sampler decides the samples itself: the loader is read as a stream of batches
    weighted = DataLoader(TensorDataset(x, y), batch_size=8,
                          sampler=WeightedRandomSampler(torch.ones(N), 30, generator=torch.Generator().manual_seed(0)))  # fmt: skip
    assert len(resolve_samples(weighted)) == 30


def test_dict_batches_need_model_inputs_besides_labels():
    with pytest.raises(ValueError, match="no model inputs besides its labels"):
        resolve_samples([{"labels": torch.zeros(3)}])
    with pytest.raises(ValueError, match="no model inputs besides its labels"):
        resolve_samples({"labels": torch.zeros(3)})


def test_prune_study_is_identical_in_every_container():
    from netxray.lenses.pruning import prune_study

    x, y = _data()
    xt, yt = _data(seed=1)
    torch.manual_seed(0)  # equal widths: hidden.1 and hidden.2 keep the shapes, so they can go
    model = build_model({"arch": "mlp", "input_shape": [D], "num_classes": C, "widths": [12, 12, 12]})
    forms = {
        name: (_containers(x, y)[name], _containers(xt, yt)[name])
        for name in ("tensors", "numpy", "TensorDataset", "DataLoader", "dict batches")
    }
    tables = {
        name: prune_study(model, data, finetune_epochs=0, n=45, repeats=2, random_draws=1, tol=0.5).table
        for name, data in forms.items()
    }
    _same(tables)
    # tol=0.5 makes every layer after the first redundant: hidden.1 and hidden.2 are pruned
    t = tables["tensors"].set_index("variant")
    assert t.loc["modularity", "removed"] == "hidden.1;hidden.2"
    with pytest.raises(TypeError, match=r"a \(train, test\) pair"):
        prune_study(model, x)
