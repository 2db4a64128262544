"""The command line as a user meets it: bad input is one ``error:`` line, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from netxray.cli import app
from netxray.training import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("ckpt") / "mlp"
    train("mlp", digits, epochs=1, width=16, depth=1, progress=False, out=out)
    return out


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_model_that_cannot_run_on_the_data_is_a_clear_error(checkpoint):
    # a digits MLP (64 inputs) on mnist1d (1×40 signals)
    for command in (["signature", checkpoint], ["modularity", checkpoint]):
        result = _run(*command, "--data", "mnist1d", "--out", "x.csv")
        _assert_clean_error(result, "cannot run on --data 'mnist1d' samples of shape [1, 40]")


def test_out_paths_are_checked_before_any_work(checkpoint, tmp_path):
    a_file = tmp_path / "taken.csv"
    a_file.write_text("mine")
    a_dir = tmp_path / "folder"
    a_dir.mkdir()
    _assert_clean_error(_run("signature", checkpoint, "--out", a_dir), "is a directory")
    _assert_clean_error(_run("scan", checkpoint, "--out", a_file), "a file is there")
    _assert_clean_error(_run("compare", checkpoint, checkpoint, "--out", a_file), "a file is there")
    _assert_clean_error(
        _run("train", "--arch", "mlp", "--epochs", "1", "--out", a_file / "x"), "is a file, not a directory"
    )
    assert a_file.read_text() == "mine"


def test_scan_rejects_bad_counts_and_seeds_up_front(checkpoint, tmp_path):
    _assert_clean_error(_run("scan", checkpoint, "--k", "0", "--out", tmp_path / "r"), "--k must be >= 1")
    result = _run("scan", checkpoint, "--seed", "-1", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--seed" in result.output  # typer's range check names it


def test_a_failed_lens_is_reported_on_stderr_even_when_quiet(checkpoint, tmp_path, monkeypatch):
    # subsets of 2 samples cannot hold a 3-nearest-neighbour graph: refused before any lens runs
    early = _run("scan", checkpoint, "--lenses", "modularity,symmetry", "--modularity-n", "2",
                 "--out", tmp_path / "r0", "--quiet")  # fmt: skip
    _assert_clean_error(early, "k = 3 neighbours needs more than k samples")
    assert not (tmp_path / "r0" / "index.html").exists()
    # a lens that fails while running: the symmetry lens still runs, and the failure is said
    # even under --quiet
    from netxray.report import runners

    def failing(*_a):
        raise ValueError("k must be smaller than the number of samples (a failure mid-run)")

    monkeypatch.setitem(runners._RUNNERS, "modularity", failing)
    result = CliRunner().invoke(
        app, ["scan", str(checkpoint), "--lenses", "modularity,symmetry",
              "--out", str(tmp_path / "r"), "--quiet"],  # fmt: skip
    )
    # the report is written, and the exit status says a lens failed (3), unless --allow-partial
    assert result.exit_code == 3, result.output
    assert "Report:" in result.stdout and (tmp_path / "r" / "index.html").is_file()
    assert "warning: modularity: k must be" in result.stderr  # the reason in words, no class name
    assert "symmetry" not in result.stderr
    again = CliRunner().invoke(
        app, ["scan", str(checkpoint), "--lenses", "modularity,symmetry",
              "--out", str(tmp_path / "r2"), "--quiet", "--allow-partial"],  # fmt: skip
    )
    assert again.exit_code == 0, again.output
    assert "warning: modularity" in again.stderr
    ok = CliRunner().invoke(
        app, ["scan", str(checkpoint), "--lenses", "symmetry", "--out", str(tmp_path / "r3"), "--quiet"]
    )
    assert ok.exit_code == 0, ok.output


# ------------------------------------------------- models and data people already have
# (fixture files in the real formats: tests/_real_formats.py; nothing is downloaded)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    import _real_formats as rf

    root = tmp_path_factory.mktemp("sources")
    return {
        "images": rf.image_folder(root / "images", per_class=10),
        "csv": rf.text_csv(root / "reviews.csv"),
        "bert": rf.tiny_bert(root / "bert"),
    }


def _complete_report(out, lenses=("nonlinearity", "modularity", "parameters", "symmetry")):
    import json

    assert (out / "index.html").is_file()
    record = json.loads((out / "results.json").read_text())
    assert {name: record["summary"][name]["status"] for name in lenses} == dict.fromkeys(lenses, "ok")
    for lens in lenses:
        assert (out / f"{lens}.csv").is_file()
    return record


def test_readme_scan_torchvision_resnet18_on_an_image_folder(sources, tmp_path):
    out = tmp_path / "R"
    result = _run("scan", "torchvision:resnet18", "--data", f"imagefolder:{sources['images']}",
                  "--image-size", "64", "--n-samples", "600", "--modularity-n", "5", "--repeats", "2",
                  "--out", out, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = _complete_report(out)
    assert record["meta"]["model_source"] == "torchvision:resnet18"
    # a folder without train/ and test/ is the user's evaluation data: all 30 images are measured
    assert record["meta"]["data"].startswith("imagefolder:images:all (30 samples")
    sig = record["summary"]["nonlinearity"]
    assert sig["n"] == "30 of 30 images" and sig["estimator"] == "positions as samples"
    # 64 px: layer4's 2×2 positions × 30 images = 120 <= 512 channels; every earlier site is scored
    assert sig["status_counts"] == {"ok": 13, "under_determined": 4}
    assert record["meta"]["n_params"] == 11689512  # resnet18 with its 1000-class head


def test_readme_scan_a_hugging_face_model_on_a_text_csv(sources, tmp_path):
    out = tmp_path / "R"
    result = _run("scan", f"hf:{sources['bert']}", "--data", f"text:{sources['csv']}",
                  "--modularity-n", "6", "--repeats", "2", "--out", out, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = _complete_report(out)
    assert record["meta"]["model"] == "BertForSequenceClassification"
    sig = (out / "nonlinearity.csv").read_text()
    assert "intermediate" in sig  # the GELU of each BERT layer is a site


def test_readme_scan_a_timm_model(sources, tmp_path):
    out = tmp_path / "R"
    result = _run("scan", "timm:test_resnet", "--data", f"imagefolder:{sources['images']}",
                  "--modularity-n", "5", "--repeats", "2", "--out", out, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = _complete_report(out)
    assert record["meta"]["model_source"] == "timm:test_resnet"


def test_the_same_source_strings_on_every_command(sources, tmp_path):
    sig = tmp_path / "sig.csv"
    r = _run("signature", f"hf:{sources['bert']}", "--data", f"text:{sources['csv']}", "--out", sig, "--quiet")
    assert r.exit_code == 0, r.output
    curve = tmp_path / "curve.csv"
    r = _run("modularity", "timm:test_resnet", "--data", f"imagefolder:{sources['images']}",
             "--n", "5", "--repeats", "2", "--out", curve, "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "status" in curve.read_text().splitlines()[0]


def test_bad_model_sources_devices_and_tokenizers_are_one_line(sources, checkpoint, tmp_path):
    out = tmp_path / "x"
    _assert_clean_error(_run("scan", "torchvision:resnet1", "--out", out), "no such torchvision model",
                        "resnet18")  # fmt: skip
    _assert_clean_error(_run("scan", "timm:no_such_net", "--out", out), "no such timm model")
    _assert_clean_error(_run("scan", f"hf:{tmp_path}", "--out", out), "config.json")
    _assert_clean_error(_run("scan", checkpoint, "--weights", tmp_path / "w.pt", "--out", out),
                        "--weights needs")  # fmt: skip
    _assert_clean_error(
        _run("signature", f"hf:{sources['bert']}", "--data", f"text:{sources['csv']}",
             "--tokenizer", f"hf:{tmp_path / 'none'}", "--out", tmp_path / "s.csv"),
        "--tokenizer", "no such directory",
    )  # fmt: skip
    import torch

    if not torch.cuda.is_available():
        for cmd in (["scan", checkpoint], ["signature", checkpoint], ["modularity", checkpoint],
                    ["train", "--arch", "mlp", "--epochs", "1"]):  # fmt: skip
            _assert_clean_error(_run(*cmd, "--device", "cuda", "--out", tmp_path / "d"),
                                "--device cuda: no CUDA GPU is available")  # fmt: skip


def test_python_load_takes_the_same_strings_and_local_weights(sources, checkpoint, tmp_path):
    import torch
    from safetensors.torch import save_file

    import netxray
    from netxray.models.sources import ModelSourceError, require

    assert type(netxray.load(str(checkpoint))).__name__ == "MLP"
    tv = netxray.load("torchvision:resnet18", num_classes=3)
    assert tv.fc.out_features == 3 and not tv.training
    # --weights: a state dict written as safetensors and as a torch.save file loads exactly
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in tv.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        loaded = netxray.load("torchvision:resnet18", weights=tmp_path / f, num_classes=3)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="fc.weight: shape"):
        netxray.load("torchvision:resnet18", weights=tmp_path / "w.safetensors")  # 1000 classes
    hf = netxray.load(f"hf:{sources['bert']}")
    assert type(hf).__name__ == "BertForSequenceClassification"
    base = netxray.load(f"hf:{sources['bert']}", task="base")
    assert type(base).__name__ == "BertModel"
    with pytest.raises(ModelSourceError, match="--task 'poetry'"):
        netxray.load(f"hf:{sources['bert']}", task="poetry")
    # a missing optional package is one line naming the extra that provides it
    with pytest.raises(ModelSourceError, match=r"pip install 'netxray\[vision\]'"):
        _missing("timm", require)
    with pytest.raises(ModelSourceError, match=r"pip install 'netxray\[hf\]'"):
        _missing("transformers", require)


def _missing(package: str, require):
    """Call ``require`` as if ``package`` were not installed (its import raises ImportError)."""
    import sys

    saved = {k: v for k, v in sys.modules.items() if k == package or k.startswith(package + ".")}
    for k in saved:
        del sys.modules[k]
    sys.modules[package] = None  # the import system raises ImportError for a None entry
    try:
        return require(package, f"{package}:x")
    finally:
        del sys.modules[package]
        sys.modules.update(saved)


def test_an_hf_image_model_brings_its_own_preprocessing(sources, tmp_path):
    import json

    import torch

    import _real_formats as rf
    import netxray
    from netxray.data import load_data

    vit = rf.tiny_vit(tmp_path / "vit")
    model = netxray.load(f"hf:{vit}")
    pre = model.netxray_preprocessing
    assert (pre["size"], pre["mean"], pre["std"]) == (16, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    # the image folder is read at the declared size with the declared normalization
    plain = load_data(f"imagefolder:{sources['images']}", image_size=16, normalize="none")
    declared = load_data(f"imagefolder:{sources['images']}", preprocessing=pre)
    x0, x1 = plain.test[0][0], declared.test[0][0]
    mean, std = torch.tensor(pre["mean"])[:, None, None], torch.tensor(pre["std"])[:, None, None]
    assert torch.allclose(x1, (x0 - mean) / std, atol=1e-6)
    out = tmp_path / "R"
    r = _run("scan", f"hf:{vit}", "--data", f"imagefolder:{sources['images']}",
             "--modularity-n", "5", "--repeats", "2", "--out", out, "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((out / "results.json").read_text())["meta"]["model"] == "ViTForImageClassification"


_SHARED = ["--task", "--device", "--image-size", "--normalize", "--tokenizer", "--text-column",
           "--label-column", "--input-columns", "--max-length", "--split"]  # fmt: skip


@pytest.mark.parametrize("command, weights", [("scan", True), ("compare", False), ("signature", True),
                                              ("compare-signatures", False), ("modularity", True)])  # fmt: skip
def test_shared_model_and_data_options_on_every_command(command, weights):
    """Declared once (cli/_common.py's data_options), listed by every command that runs a model on
    data, in --help and to click, in one order."""
    import typer.main

    cmd = typer.main.get_command(app).commands[command]
    opts = [o for p in cmd.params for o in p.opts]
    want = (["--weights"] if weights else []) + _SHARED
    assert [o for o in opts if o in want] == want
    shown = _run(command, "--help").output
    for option in want:
        assert option in shown, (command, option)


def test_prune_takes_the_shared_options_but_split():
    import typer.main

    cmd = typer.main.get_command(app).commands["prune"]
    opts = [o for p in cmd.params for o in p.opts]
    assert [o for o in opts if o in ["--weights", *_SHARED]] == ["--weights", *_SHARED[:-1]]
    assert "--curve-split" in opts  # its own protocol chooses the split


def test_shared_options_are_declared_in_one_place():
    from pathlib import Path

    import netxray.cli as cli

    for path in Path(cli.__file__).parent.glob("*.py"):
        text = path.read_text()
        for option in _SHARED[2:]:  # the data-source options: only _common.py names them
            assert (f'"{option}"' in text) == (path.name == "_common.py"), (path.name, option)


def test_data_options_hands_the_command_one_object():
    import typer

    from netxray.cli._common import DataOptions, data_options

    seen = {}
    toy = typer.Typer()

    @toy.command()
    @data_options(weights=None)
    def run(data: str = typer.Option("digits", "--data"), opts: DataOptions = DataOptions(),
            seed: int = typer.Option(0, "--seed")) -> None:  # fmt: skip
        seen.update(data=data, opts=opts, seed=seed)

    r = CliRunner().invoke(toy, ["--data", "blobs", "--image-size", "32", "--split", "train",
                                 "--device", "cpu", "--seed", "3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert seen == {"data": "blobs", "seed": 3,
                    "opts": DataOptions(image_size=32, split="train", device="cpu")}  # fmt: skip
    assert "--weights" not in CliRunner().invoke(toy, ["--help"]).output
