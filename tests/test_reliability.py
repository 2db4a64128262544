"""Reliability (issue 13): no silently wrong "ok", scale-free statuses, honest summaries, owned and
atomic reports, bounded cost, process pools that never re-run a user's script, and the bad-input
cases a new user hit — each one a test that failed before the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import netxray
from netxray.measures.affinity import MIN_SAMPLES, affinity_score
from netxray.measures.modularity import modularity, modularity_from_gram
from netxray.models import build_model

# --------------------------------------------------------------------------- 1. validity rules


def _homogeneous_cnn() -> nn.Module:
    """A bias-free ReLU CNN: f(a·x) = a·f(x) for a > 0 (positively homogeneous)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.ReLU(), nn.Conv2d(8, 16, 3, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 24, bias=False), nn.ReLU(),
    )  # fmt: skip


def test_homogeneous_model_same_statuses_and_scores_on_scaled_inputs():
    # before: the absolute tests (tr Σ_Y ≤ 2e-6·d, ridge ε·I) made 0.001·x "degenerate" (score 1.0)
    model = _homogeneous_cnn()
    x = torch.randn(200, 3, 8, 8)
    ref = netxray.nonlinearity_signature(model, x, n_samples=200, companions=False)
    assert list(ref["status"]) == ["ok"] * 3
    for a in (1e-3, 1e-6):
        got = netxray.nonlinearity_signature(model, a * x, n_samples=200, companions=False)
        assert list(got["status"]) == list(ref["status"])
        np.testing.assert_allclose(got["affinity"], ref["affinity"], atol=1e-6)


@pytest.mark.parametrize("a", [1e-6, 1e-3, 1.0, 1e3])
def test_affinity_status_and_score_are_scale_free(a):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = np.maximum(x, 0) + 0.1 * x
    base = affinity_score(x, y)
    got = affinity_score(a * x, a * y)
    assert got.status == base.status == "ok"
    assert got.score == pytest.approx(base.score, abs=1e-9)
    # a dead unit stays degenerate at every scale, a live one stays ok
    dead = np.tile(np.array([[0.5, 0.0, 2.0, 0.0]]), (300, 1))
    assert affinity_score(a * x, a * dead).status == "degenerate"


def test_relative_ridge_is_the_default_and_absolute_reproduces_the_reference():
    rs = np.random.RandomState(987)
    for _ in range(3):
        rs.normal(-1, 2, (1000, 1))
    for m in np.linspace(-4, 4, 20)[:6]:
        x = rs.uniform(m - 2, m + 2, (1000, 1))
    y = np.maximum(x, 0)  # m = −1.89: 28 positive outputs
    assert affinity_score(x, y).score == pytest.approx(0.131587, abs=2e-6)
    assert affinity_score(x, y, ridge="absolute").score == pytest.approx(0.133877, abs=2e-6)
    assert affinity_score(x, y, eps=0.0).score == pytest.approx(0.131586, abs=2e-6)
    with pytest.raises(ValueError, match="ridge"):
        affinity_score(x, y, ridge="fixed")


def test_too_few_samples_is_not_ok():
    # before: nonlinearity_signature(..., n_samples=2) gave affinity 1.0 with status ok
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    sig = netxray.nonlinearity_signature(model, torch.randn(50, 4), n_samples=2)
    assert list(sig["status"]) == ["too_few_samples"]
    assert "minimum" in sig["error"].iloc[0]
    s = sig.attrs["summary"]
    assert s["n_ok"] == 0 and "mean" not in s and "too_few_samples" in s["note"]
    x = np.random.default_rng(0).normal(size=(MIN_SAMPLES, 1))
    assert affinity_score(x, np.tanh(x)).status == "ok"  # the minimum itself is enough in 1-D
    assert affinity_score(x[:-1], np.tanh(x[:-1])).status == "too_few_samples"


def test_n_at_most_d_is_flagged_under_determined_but_scored():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 20))
    res = affinity_score(x, np.tanh(x))
    assert res.status == "under_determined" and 0.0 <= res.score <= 1.0
    assert "n = 20" in res.message and "d = 20" in res.message
    assert affinity_score(x[:, :19], np.tanh(x[:, :19])).status == "ok"


def test_constant_input_rows_give_no_modularity():
    # before: all-zero inputs (every feature row identical) gave Q = −0.084 with status "ok"
    m = build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [16, 16]})
    x, y = torch.zeros(120, 1, 8, 8), torch.arange(120) % 10
    curve = netxray.modularity_curve(m, (x, y), n=100, repeats=2)
    assert set(curve["status"]) == {"identical_rows"}
    assert curve["q_mean"].isna().all()
    assert "sample order" in curve["error"].iloc[0]
    s = curve.attrs["summary"]
    assert s["n_ok"] == 0 and s["left_out"] == {"identical_rows": 2} and "0 of 2" in s["note"]


def test_modularity_measure_statuses():
    y = np.arange(40) % 2
    same = np.tile([1.0, 2.0, 3.0], (40, 1)) * np.linspace(1, 5, 40)[:, None]  # one direction
    r = modularity(same, y)
    assert r.status == "identical_rows" and np.isnan(r.q)
    assert modularity_from_gram(same @ same.T, y).status == "identical_rows"
    z = modularity(np.zeros((40, 3)), y)
    assert z.status == "zero_rows" and np.isnan(z.q)
    ok = modularity(np.random.default_rng(0).normal(size=(40, 3)), y)
    assert ok.status == "ok" and np.isfinite(ok.q)
    with pytest.raises(ValueError, match="at least 2 classes"):
        modularity(np.random.default_rng(0).normal(size=(40, 3)), np.zeros(40))


def test_degenerate_sites_are_left_out_of_the_summary():
    # before: an EfficientNet-B0 scan reported mean affinity 0.997 with 64 of 65 sites degenerate
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.fill_(-1.0)  # every ReLU input negative: a dead layer, constant output
    sig = netxray.nonlinearity_signature(model, torch.randn(300, 6), n_samples=300)
    assert list(sig["status"]) == ["ok", "degenerate"]
    s = sig.attrs["summary"]
    assert s["n_ok"] == 1 and s["left_out"] == {"degenerate": 1}
    assert s["mean"] == pytest.approx(float(sig["affinity"].iloc[0]))  # the 1.0 is not averaged in
    assert "1 of 2" in s["note"] and "constant" in s["note"]


# --------------------------------------------------------------------------- 2. reports


def _small_report(lenses=("parameters",)):
    from netxray.report import scan

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.rand(60, 1, 4, 4), torch.arange(60) % 3
    return scan(model, (x, y), lenses=lenses, progress=False, n_samples=60, modularity_n=30, repeats=2)


def test_saving_over_a_report_removes_exactly_its_files(tmp_path):
    # before: a parameters-only report saved over a full one left nonlinearity.csv, modularity.csv…
    import json

    from netxray.report import report_files

    out = tmp_path / "rep"
    _small_report(("nonlinearity", "modularity", "parameters")).save(out)
    assert (out / "nonlinearity.csv").exists() and (out / "modularity.csv").exists()
    (out / "my_notes.txt").write_text("mine")  # a file of the user's in the report folder
    _small_report(("parameters",)).save(out)
    listed = set(json.loads((out / "results.json").read_text())["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == listed | {"my_notes.txt"}
    assert not (out / "nonlinearity.csv").exists() and not (out / "modularity.csv").exists()
    assert (out / "my_notes.txt").read_text() == "mine"
    assert report_files(out) == listed
    # without the user's file the directory is swapped whole; nothing stray is left beside it
    (out / "my_notes.txt").unlink()
    _small_report(("nonlinearity", "parameters")).save(out)
    assert (out / "nonlinearity.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_report_never_overwrites_a_file_it_did_not_write(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "parameters.csv").write_text("the user's own table")
    with pytest.raises(FileExistsError, match="not written by a netxray report"):
        _small_report().save(out)
    assert (out / "parameters.csv").read_text() == "the user's own table"
    assert not (out / "index.html").exists()


_HOLD_LOCK = """
import sys, time
from netxray.report import report_lock
with report_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_of_the_same_out_fails_with_one_line(tmp_path):
    # before: two `netxray scan` runs into one --out both exited 0 and mixed their files
    import os
    import subprocess
    import sys

    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.report import ReportLockedError

    out = tmp_path / "rep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE,
                              env=env, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ReportLockedError, match=f"pid {holder.pid}"):
            _small_report().save(out)
        res = CliRunner().invoke(app, ["scan", str(tmp_path / "missing-ckpt"), "--out", str(out)])
        assert res.exit_code == 1 and "Traceback" not in res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another netxray process" in lines[0], res.output
    finally:
        holder.kill()
        holder.wait()
    _small_report().save(out)  # the kernel released the killed holder's lock: no stale lock
    assert (out / "index.html").exists()


def test_unwritable_out_is_reported_before_any_work(tmp_path):
    # before: a read-only --out was reported only after every lens had been computed. /proc
    # refuses new files even to root, so the check is real whoever runs the tests.
    from typer.testing import CliRunner

    from netxray.cli import app

    res = CliRunner().invoke(app, ["scan", str(tmp_path / "no-such-checkpoint"), "--out", "/proc/netxray-r"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "--out /proc/netxray-r" in res.output and "no-such-checkpoint" not in res.output


# --------------------------------------------------------------------------- late or cryptic errors


def _cli(*args):
    from typer.testing import CliRunner

    from netxray.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, digits):
    from netxray.training import train

    root = tmp_path_factory.mktemp("ck")
    for seed in (0, 1):
        train("mlp", digits, epochs=1, width=16, depth=1, seed=seed, progress=False, out=root / f"mlp{seed}")
    return root / "mlp0", root / "mlp1"


def test_train_refuses_to_overwrite_a_checkpoint_without_force(two_checkpoints):
    # before: `netxray train --out` silently replaced an existing checkpoint
    ck = two_checkpoints[0]
    before = (ck / "model.safetensors").read_bytes()
    res = _cli("train", "--arch", "mlp", "--width", "8", "--depth", "1", "--epochs", "1", "--quiet", "--out", ck)
    assert res.exit_code == 1 and "already holds a checkpoint" in res.output and "--force" in res.output
    assert (ck / "model.safetensors").read_bytes() == before
    with pytest.raises(FileExistsError, match="overwrite=True"):
        netxray.train("mlp", "digits", epochs=1, out=ck, progress=False)
    res = _cli("train", "--arch", "mlp", "--width", "16", "--depth", "1", "--epochs", "1", "--seed", "0",
               "--quiet", "--out", ck, "--force")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert netxray.load(ck) is not None


def test_compare_prints_model_names_not_empty_values(two_checkpoints, tmp_path):
    # before: rich read "[mlp0,mlp1]" as a markup tag and printed `models=, dendrogram order=`
    res = _cli("compare", *two_checkpoints, "--lenses", "nonlinearity", "--n-samples", "100",
               "--out", tmp_path / "cmp")  # fmt: skip
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "compare_nonlinearity" in ln)
    assert "models=[mlp0,mlp1]" in line and "dendrogram order=[" in line


def test_symmetry_says_what_canonicalization_dropped_in_words(two_checkpoints, tmp_path):
    # before: "canonical form written to … (dropped {}, merged {})"
    res = _cli("symmetry", two_checkpoints[0], "--canonical-out", tmp_path / "canon")
    assert res.exit_code == 0, res.output
    assert "{}" not in res.output and "no unit dropped or merged" in res.output


def test_prune_with_nothing_to_prune_does_not_fine_tune(monkeypatch, digits):
    # before: `netxray prune` said nothing could be pruned, then fine-tuned the unpruned control
    from netxray.lenses import pruning

    calls = []
    monkeypatch.setattr(pruning, "_finetune", lambda *a, **k: calls.append(1) or a[0])
    model = build_model({"arch": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [16]})
    study = pruning.prune_study(model, digits, finetune_epochs=1, n=100, repeats=2)
    assert study.summary["n_removed"] == 0 and calls == []
    row = study.table.set_index("variant").loc["finetuned"]
    assert row["status"].startswith("skipped") and np.isnan(row["acc_finetuned"])


def test_nan_weights_and_parameterless_models_get_clear_words():
    # before: "shared_bin_edges: the arrays hold no finite value" / "give arrays or an explicit range"
    from netxray.lenses.parameters import weight_histograms
    from netxray.report import scan

    nan_model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in nan_model.parameters():
            p.fill_(float("nan"))
    empty = nn.Sequential(nn.ReLU(), nn.Tanh())
    with pytest.raises(ValueError, match="NaN or inf .*diverged"):
        weight_histograms(nan_model)
    with pytest.raises(ValueError, match="no weight parameters"):
        weight_histograms(empty)
    x, y = torch.randn(60, 4), torch.arange(60) % 3
    for model, words in ((nan_model, "NaN or inf"), (empty, "no weight parameters")):
        res = scan(model, (x, y), lenses=("parameters",), progress=False).results["parameters"]
        assert res.status == "ok" and "shared_bin_edges" not in " ".join(res.notes)
        assert any(words in n for n in res.notes), res.notes


def test_inf_weights_raise_one_clear_error_without_numpy_warnings():
    # before: canonicalize/align on Inf weights leaked RuntimeWarnings (inf − inf) and NaN results
    import warnings

    from netxray.measures.symmetry import duplicate_groups, match_units

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (lambda: netxray.canonicalize(model), lambda: netxray.align(model, model)):
            with pytest.raises(ValueError, match=r"non-finite \(NaN/inf\) parameters in 0.weight"):
                fn()
        assert netxray.symmetry_group(model)["identical_units"].tolist() == [0]
        rows = np.array([[1.0, np.inf], [0.0, 1.0], [1.0, np.inf], [0.0, 1.0]])
        assert duplicate_groups(rows) == [[0], [1, 3], [2]]  # an inf row is nobody's duplicate
        with pytest.raises(ValueError, match="NaN or inf"):
            match_units(rows, rows)


# --------------------------------------------------------------------------- 4. process pools

_PLAIN_SCRIPT = """\
# a user's plain script, as the README shows it: no `if __name__ == "__main__":` guard
import os, sys
from netxray.lenses.zoo import analyze_zoo, train_zoo
with open(sys.argv[2], "a") as log:
    log.write(f"script body run in pid {os.getpid()}\\n")
zoo = sys.argv[1]
train_zoo(zoo, "mlp", "width=8;depth=1;lr=1e-2;epochs=1;seed=0,1", engine="local", workers=2, progress=False)
res = analyze_zoo(zoo, engine="local", workers=2)
print("statuses", sorted(set(res.models["status"])))
print("engine", res.summary["engine_detail"])
"""


def test_analyze_zoo_from_a_plain_script_never_reruns_it(tmp_path):
    # before: each spawned worker re-ran the whole script, then the pool died (BrokenProcessPool)
    import os
    import subprocess
    import sys

    script = tmp_path / "my_study.py"
    script.write_text(_PLAIN_SCRIPT)
    log = tmp_path / "runs.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "zoo"), str(log)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(log.read_text().splitlines()) == 1  # the script body ran once, in the parent only
    assert "statuses ['ok']" in proc.stdout
    assert "engine local process pool of 2 workers, fork, because spawn would re-run" in proc.stdout


def test_start_method_is_spawn_when_nothing_would_be_rerun(monkeypatch):
    import sys
    import types

    from netxray.lenses import zoo

    fake = types.ModuleType("__main__")  # an interactive session: no file, no spec
    fake.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", fake)
    assert zoo.choose_start_method()[0] == "spawn"
    fake.__file__ = "/somewhere/study.py"
    method, why = zoo.choose_start_method()
    assert method == "fork" and "/somewhere/study.py" in why
    eng = zoo.Engine("local", 2)
    assert "fork" in eng.description and "2 workers" in eng.description


# --------------------------------------------------------------------------- 3. bounded cost


def test_align_of_a_huge_layer_is_refused_before_any_allocation(monkeypatch):
    # before: align on Linear(64, 20000) ran 96 s and took 6.6 GB without a word
    import time

    from netxray.measures import cost

    a = nn.Sequential(nn.Linear(64, 20000), nn.ReLU(), nn.Linear(20000, 2))
    monkeypatch.setattr(cost, "available_memory", lambda: 4 << 30)  # a 4 GiB machine
    t0 = time.perf_counter()
    with pytest.raises(cost.CostError, match=r"20000×20000 assignment.*6\.\d GiB.*netxray\.canonicalize"):
        netxray.align(a, a)
    assert time.perf_counter() - t0 < 20  # refused up front, not after the 96 s solve
    b, sec = cost.assignment_cost(20000, 64)
    assert 6e9 < b < 7e9 and sec > cost.WARN_SECONDS  # the 6.6 GB, warned on any machine


def test_expensive_operations_warn_past_the_documented_threshold(monkeypatch):
    from netxray.measures import cost

    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    monkeypatch.setattr(cost, "WARN_BYTES", 1000)
    with pytest.warns(cost.CostWarning, match="align: axis .* 32 units.*canonicalize"):
        netxray.align(a, a)
    with pytest.warns(cost.CostWarning, match="canonicalize: .* parameters"):
        netxray.canonicalize(a)


def test_huge_sample_counts_are_refused_naming_the_option(monkeypatch):
    from netxray.measures import cost

    monkeypatch.setattr(cost, "available_memory", lambda: 1 << 20)  # 1 MiB: everything is too big
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    sig = netxray.nonlinearity_signature(model, torch.randn(400, 4), n_samples=400)
    assert sig["status"].tolist() == ["error"] and "n_samples" in sig["error"].iloc[0]
    m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [8]})
    with pytest.raises(cost.CostError, match="smaller n"):
        netxray.modularity_curve(m, (torch.randn(400, 4), torch.arange(400) % 2), n=400, repeats=1)


def test_report_summary_card_shows_what_was_left_out():
    import re

    from netxray.report import scan

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.fill_(-1.0)  # a dead ReLU layer
    rep = scan(model, (torch.randn(100, 6), torch.arange(100) % 2), lenses=("nonlinearity",), progress=False)
    card = re.search(r'<section id="summary">.*?</section>', rep.to_html(), re.S).group(0)
    assert "sites ok (in the statistics)</dt><dd>1<" in card
    assert "left out</dt><dd>degenerate=1<" in card
    assert rep.summary["nonlinearity"]["mean affinity"] == pytest.approx(
        float(rep["nonlinearity"]["affinity"].iloc[0])
    )
