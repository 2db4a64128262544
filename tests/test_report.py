"""The product layer: scan, the Report and its files, compare_report, a user's own model, the CLI.

Known answers used here: log10 |G| of an MLP with hidden widths (64, 64) is 2·log10 64! (SPEC §4.1,
via lgamma); a model and a unit-permuted copy of it have the same signature (the affinity score is
invariant to a joint rotation of input and output, SPEC §1.1) and an alignment distance of 0 after
weight matching (SPEC §4.3); the weights a user gives are the weights scanned (model hashes).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from netxray._meta import model_hash
from netxray.report import compare_report, scan
from netxray.report.user_model import UserModelError, load_user_model

SMALL = {"n_samples": 200, "modularity_n": 150, "repeats": 3, "progress": False}


@pytest.fixture(scope="module")
def mlp_report(trained, digits):
    model = trained("mlp")
    before = (model_hash(model), [m.training for m in model.modules()])
    report = scan(model, digits, seed=0, **SMALL)
    return model, before, report


def test_scan_all_lenses(mlp_report):
    model, (hash_before, flags_before), report = mlp_report
    assert {n: r.status for n, r in report.results.items()} == dict.fromkeys(
        ("nonlinearity", "modularity", "parameters", "symmetry"), "ok"
    )
    # the model is what the user gave: weights, buffers and train/eval flags untouched
    assert model_hash(model) == hash_before and [m.training for m in model.modules()] == flags_before

    sig = report["nonlinearity"]
    assert list(sig["site"]) == ["hidden.0.act", "hidden.1.act"] and (sig["n"] == 200).all()
    assert sig["affinity"].between(0, 1).all()
    s = report.summary
    assert s["nonlinearity"]["n"] == "200 of 359 samples" and s["nonlinearity"]["d"] == 64 and s["nonlinearity"]["seed"] == 0

    curve = report["modularity"]
    assert list(curve["layer"]) == ["hidden.0", "hidden.1"]
    # a trained digits classifier separates the classes far above the |Q| ≲ 0.02 of shuffled labels
    assert s["modularity"]["Q last layer"] > 0.3 and s["modularity"]["k"] == 3
    assert s["modularity"]["n"] == "150 per subset of 359 samples" and s["modularity"]["repeats"] == 3

    stats = report["parameters"]
    assert s["parameters"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert set(stats["role"]) >= {"weight", "bias", "global"}

    # SPEC §4.1: hidden units permute freely, |G| = 64!·64! for widths (64, 64) with ReLU
    expected = 2 * math.lgamma(65) / math.log(10)
    assert s["symmetry"]["log10 |G|"] == pytest.approx(expected, rel=1e-12)
    assert 0 < s["symmetry"]["relative reduction"] < 0.05  # small in log terms (SPEC §4.2)
    assert s["symmetry"]["log10 N reduced"] < s["symmetry"]["log10 N classical"]


def test_scan_is_deterministic(trained, digits):
    model = trained("mlp")
    a = scan(model, digits, ("nonlinearity", "modularity"), seed=3, **SMALL)
    b = scan(model, digits, ("nonlinearity", "modularity"), seed=3, **SMALL)
    pd.testing.assert_frame_equal(a["nonlinearity"], b["nonlinearity"])
    pd.testing.assert_frame_equal(a["modularity"], b["modularity"])
    c = scan(model, digits, ("modularity",), seed=4, **SMALL)
    assert not np.allclose(a["modularity"]["q_mean"], c["modularity"]["q_mean"])  # the seed matters


def test_save_writes_self_contained_report(mlp_report, tmp_path):
    model, _, report = mlp_report
    index = report.save(tmp_path / "out")
    out = index.parent
    assert index.name == "index.html"
    html = index.read_text()
    # self-contained: nothing fetched, every plot embedded and decodable as PNG
    assert not re.search(r'(src|href)="(https?:|//)', html)
    assert "<script" not in html
    imgs = re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == sum(len(r.plots) for r in report.results.values()) >= 5
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("Summary", "Non-linearity signature", "Modularity curve", "Pruning suggestion",
                 "Weight distributions", "Node strengths", "covering"):  # fmt: skip
        assert text in html, text

    record = json.loads((out / "results.json").read_text())
    assert record["meta"]["model_hash"] == model_hash(model) and record["meta"]["seed"] == 0
    assert record["meta"]["n"] == 200 and record["meta"]["data"] == "digits:test (359 samples)"
    assert record["summary"]["modularity"]["k"] == 3
    for name, df in report.tables.items():
        back = pd.read_csv(out / f"{name}.csv")
        assert len(back) == len(df), name
        assert (out / f"{name}.parquet").is_file(), name
    sig = pd.read_csv(out / "nonlinearity.csv")
    np.testing.assert_allclose(sig["affinity"], report["nonlinearity"]["affinity"], rtol=1e-12)
    assert pd.read_parquet(out / "modularity.parquet")["q_mean"].tolist() == report["modularity"]["q_mean"].tolist()


class TrainingOnlyDropout(nn.Module):
    """A layer that refuses inference (e.g. a Monte-Carlo layer exported for training only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            raise NotImplementedError("TrainingOnlyDropout has no inference mode")
        return nn.functional.dropout(x, 0.1)


def test_a_lens_that_cannot_run_is_a_note(tmp_path, digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), TrainingOnlyDropout(), nn.Linear(32, 10))
    report = scan(model.eval(), digits, seed=0, **SMALL)
    status = {n: r.status for n, r in report.results.items()}
    # symmetry reads the model's structure from a forward pass, which this model refuses: the
    # lens says so (it used to report "ok" with no axes)
    assert status == {"nonlinearity": "failed", "modularity": "failed", "parameters": "ok", "symmetry": "failed"}
    for lens in ("nonlinearity", "modularity", "symmetry"):
        assert "no inference mode" in report.results[lens].reason
    assert "could not be read" in report.results["symmetry"].reason
    assert set(report.failed) == {"nonlinearity", "modularity", "symmetry"}
    html = report.to_html(tmp_path / "r.html")
    assert html.count("could not run on this model") == 3 and "no inference mode" in html
    assert json.loads(report.to_json())["summary"]["modularity"]["status"] == "failed"
    # data without labels: modularity says why, the signature still runs
    unlabeled = scan(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh()), digits.test.x,
                     ("nonlinearity", "modularity"), **SMALL)  # fmt: skip
    assert unlabeled.results["nonlinearity"].status == "ok"
    assert unlabeled.results["modularity"].status == "failed"
    assert "labels" in unlabeled.results["modularity"].reason


class Spectral(nn.Module):
    """A complex-valued spectral filter: no lens has a rule for it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.filt = nn.Parameter(torch.randn(n // 2 + 1, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(torch.fft.rfft(x) * self.filt, n=x.shape[-1])


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.spectral = Spectral(16)
        self.act = nn.Tanh()
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.reshape(x.shape[0], 8, 8))
        return self.head(self.act(self.spectral(out[:, -1])))


@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_unsupported_layers_are_named_in_the_report(digits):
    torch.manual_seed(0)
    report = scan(Recurrent().eval(), digits, seed=0, **SMALL)
    assert all(r.status == "ok" for r in report.results.values())
    notes = {n: " ".join(r.notes) for n, r in report.results.items()}
    assert "LSTM" in notes["parameters"] and "Spectral" in notes["parameters"]  # not in the strength graph
    # the SPEC §4.2 bound is for Linear chains: refused with the reason, not computed wrongly
    assert "Covering bounds not computed" in notes["symmetry"] and "LSTM" in notes["symmetry"]
    assert "covering_bounds" not in report.results["symmetry"].tables
    assert "lstm" in notes["symmetry"]  # the symmetry lens says what it did not analyse
    assert "Not a built-in netxray model" in notes["modularity"]


def _permuted_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same function: hidden units of the first layer permuted (rows in, columns out)."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(other.hidden[0].linear.out_features, generator=g)
    with torch.no_grad():
        other.hidden[0].linear.weight.copy_(other.hidden[0].linear.weight[perm])
        other.hidden[0].linear.bias.copy_(other.hidden[0].linear.bias[perm])
        other.hidden[1].linear.weight.copy_(other.hidden[1].linear.weight[:, perm])
    return other


def test_compare_report(trained, digits, tmp_path):
    a = trained("mlp")
    models = {"a": a, "a-permuted": _permuted_copy(a), "cnn": trained("cnn")}
    x = digits.test.x[:50]
    torch.testing.assert_close(models["a"](x), models["a-permuted"](x), rtol=1e-5, atol=1e-5)
    report = compare_report(models, digits, seed=0, clusters=2, **SMALL)
    assert set(report.children) == set(models)
    assert all(r.status == "ok" for r in report.results.values()), report.failed
    dist = report.results["compare_nonlinearity"].tables["distances"]
    # same function, same samples: identical signatures (affinity is rotation invariant)
    assert dist.loc["a", "a-permuted"] < 1e-6 < dist.loc["a", "cnn"]
    clus = report.results["compare_nonlinearity"].tables["clustering"].set_index("model")["cluster"]
    assert clus["a"] == clus["a-permuted"] != clus["cnn"]
    align = report.results["compare_symmetry"].tables["alignment"]
    assert len(align) == 1 and set(align.iloc[0][["model_a", "model_b"]]) == {"a", "a-permuted"}
    assert align.iloc[0]["distance_after"] < 1e-8 < align.iloc[0]["distance_raw"]
    curves = report.results["compare_modularity"].tables["curves"]
    assert set(curves["model"]) == set(models)
    side = report.results["compare_parameters"].tables["global_stats"]
    assert list(side["model"]) == list(models)
    hist = report.results["compare_parameters"].tables["histograms"]
    widths = (hist["right"] - hist["left"]).to_numpy()
    for m in models:  # densities on shared bins integrate to 1
        assert float((hist[m] * widths).sum()) == pytest.approx(1.0, abs=1e-9)
    index = report.save(tmp_path / "cmp")
    html = index.read_text()
    assert "Model a-permuted" in html and "Signatures overlaid" in html
    assert (tmp_path / "cmp" / "models" / "cnn" / "nonlinearity.csv").is_file()


# --------------------------------------------------------------------------- user model + CLI

USER_FILE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def make_model():
    return TinyNet()


def make_wide():
    return TinyNet(hidden=32)


NOT_A_FACTORY = 3


def returns_a_number():
    return 42
'''


@pytest.fixture
def user_files(tmp_path):
    from safetensors.torch import save_file

    src = tmp_path / "elsewhere" / "my_net.py"  # a directory outside the package
    src.parent.mkdir()
    src.write_text(textwrap.dedent(USER_FILE))
    model = load_user_model(f"{src}:make_model")
    torch.manual_seed(123)
    for p in model.parameters():  # weights that differ from the factory's own initialisation
        nn.init.normal_(p, std=0.2)
    st, pt = tmp_path / "w.safetensors", tmp_path / "w.pt"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, st)
    torch.save(model.state_dict(), pt)
    return src, st, pt, model_hash(model)


def _cli(args: list[str]):
    from netxray.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_scan_user_model(user_files, tmp_path, digits):
    src, st, pt, weights_hash = user_files
    out = tmp_path / "scan-st"
    res = _cli(["scan", "--model", f"{src}:make_model", "--weights", st, "--data", "digits", "--out", out,
                "--n-samples", 150, "--modularity-n", 100, "--repeats", 2, "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == f"Report: {(out / 'index.html').resolve()}"
    record = json.loads((out / "results.json").read_text())
    assert record["meta"]["model_hash"] == weights_hash  # the given weights, not the factory's
    assert record["meta"]["weights"] == str(st.resolve())
    statuses = {k: v["status"] for k, v in record["summary"].items()}
    assert statuses == dict.fromkeys(("nonlinearity", "modularity", "parameters", "symmetry"), "ok")
    sig = pd.read_csv(out / "nonlinearity.csv")
    assert list(sig["op"]) == ["GELU", "torch.relu"]  # a functional activation is a site too

    # the same weights as a .pt state dict, with data given as an npz file
    npz = tmp_path / "digits.npz"
    np.savez(npz, x=digits.test.x.numpy(), y=digits.test.y.numpy())
    out_pt = tmp_path / "scan-pt"
    res = _cli(["scan", pt, "--model", f"{src}:make_model", "--data", f"npz:{npz}", "--out", out_pt,
                "--lenses", "nonlinearity,parameters", "--n-samples", 100, "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out_pt / "results.json").read_text())
    assert record["meta"]["model_hash"] == weights_hash
    assert set(record["summary"]) == {"nonlinearity", "parameters"}


def test_cli_user_model_errors(user_files, tmp_path):
    src, st, pt, _ = user_files

    def err(*args) -> str:
        res = _cli(["scan", *args, "--out", tmp_path / "x", "--quiet"])
        assert res.exit_code == 1, res.output
        return res.output

    assert "expected PATH.py:FACTORY" in err("--model", str(src))
    assert "not found" in err("--model", f"{tmp_path}/nope.py:make_model")
    out = err("--model", f"{src}:mk", "--weights", st)
    assert "defines no 'mk'" in out and "make_model" in out and "returns_a_number" in out
    assert "not a function" in err("--model", f"{src}:NOT_A_FACTORY")
    assert "returned a int" in err("--model", f"{src}:returns_a_number")
    # the wrong architecture for these weights: every shape mismatch listed
    out = err("--model", f"{src}:make_wide", "--weights", st)
    assert "body.1.weight: shape [24, 64] in the file, [32, 64] in the model" in out
    # keys that do not match: listed by name, with a hint
    state = torch.load(pt, weights_only=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pt")
    out = err("--model", f"{src}:make_model", "--weights", tmp_path / "dp.pt")
    assert "missing keys" in out and "head.bias" in out and "unexpected keys" in out and "module." in out
    torch.save({"head.weight": state["head.weight"]}, tmp_path / "part.pt")
    assert "missing keys (in the model, not in the file): body.1.bias" in err(
        "--model", f"{src}:make_model", "--weights", tmp_path / "part.pt")
    assert "file not found" in err("--model", f"{src}:make_model", "--weights", tmp_path / "gone.pt")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    assert "unknown format '.ckpt'" in err("--model", f"{src}:make_model", "--weights", tmp_path / "w.ckpt")
    assert "needs --model" in err("--weights", st)
    assert "nothing to scan" in err()
    assert "--data 'nope'" in err("--model", f"{src}:make_model", "--weights", st, "--data", "nope")
    out = err("--model", f"{src}:make_model", "--weights", st, "--data", "mnist1d")
    assert "cannot run on --data 'mnist1d' samples of shape [1, 40]" in out
    assert "--layers 'body.9': unknown layer(s)" in err("--model", f"{src}:make_model", "--weights", st,
                                                         "--layers", "body.9")  # fmt: skip
    assert "unknown ['bogus']" in err("--model", f"{src}:make_model", "--lenses", "bogus")
    assert "cannot load checkpoint" in err(tmp_path / "no-such-checkpoint")


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_weights_never_execute_code(user_files, tmp_path):
    src, _, _, _ = user_files
    marker = tmp_path / "code-ran"
    bad = tmp_path / "evil.pt"
    torch.save({"head.weight": _Payload(str(marker))}, bad)
    with pytest.raises(UserModelError, match="weights_only=True"):
        load_user_model(f"{src}:make_model", bad)
    assert not marker.exists()
    # a whole pickled module (torch.save(model)) is refused the same way, with the fix
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(UserModelError, match=r"torch.save\(model.state_dict\(\), path\)"):
        load_user_model(f"{src}:make_model", tmp_path / "module.pt")
    # a training checkpoint with the state dict nested under "state_dict" is accepted
    model = load_user_model(f"{src}:make_model")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "nested.pt")
    loaded = load_user_model(f"{src}:make_model", tmp_path / "nested.pt")
    assert model_hash(loaded) == model_hash(model) and not loaded.training


def test_cli_demo_reuses_cached_models(tmp_path, monkeypatch):
    from netxray.cli import demo_cmd

    # two tiny models keep this fast; the real list is the four families (see make demo)
    monkeypatch.setattr(demo_cmd, "DEMO_MODELS", (("mlp", "mlp", {"epochs": 1, "width": 16}, 0),
                                                  ("mlp-seed1", "mlp", {"epochs": 1, "width": 16}, 1)))  # fmt: skip
    args = ["demo", "--out", tmp_path / "demo", "--cache", tmp_path / "cache", "--n-samples", 100]
    first = _cli(args)
    assert first.exit_code == 0, first.output
    assert "trained" in first.output and first.output.strip().splitlines()[-1].startswith("Report: ")
    r1 = json.loads((tmp_path / "demo" / "results.json").read_text())
    second = _cli(args)
    assert second.exit_code == 0, second.output
    assert "cached" in second.output and "trained" not in second.output
    r2 = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert r1["meta"]["models"] == r2["meta"]["models"]  # the same weights: hashes equal
    assert r1["summary"] == r2["summary"]  # same seed, the same numbers (timings kept apart)
    assert set(r1["timings_s"]) == set(r2["timings_s"])
    assert r2["summary"]["compare_symmetry"]["aligned pairs"] == 1


def test_a_report_leaves_other_files_in_its_folder_alone(tmp_path):
    import stat

    import netxray

    secret = tmp_path / "id_rsa"
    secret.write_text("key")
    secret.chmod(0o600)
    script = tmp_path / "sub" / "run.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh")
    script.chmod(0o755)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(60, 4), torch.arange(60) % 3
    netxray.scan(model, (x, y), lenses=("symmetry",), progress=False).save(tmp_path)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert (tmp_path / "index.html").stat().st_mode & 0o044  # the report itself is readable
