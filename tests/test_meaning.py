"""Numbers that mean something on the data people have (issue 19): whole data sets, determined
signatures, statuses and scales a reader can trust. Each test fails on the behaviour it replaced."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from _real_formats import image_folder
from netxray.data import DataError, load_data
from netxray.lenses.modularity import modularity_curve
from netxray.lenses.nonlinearity import nonlinearity_signature, plot_signatures
from netxray.measures.symmetry import format_power_of_ten
from netxray.report import scan
from netxray.report.html import ItemizedNote


class WideConv(nn.Module):
    """Two conv stages of 64 and 96 channels: pooled, 40 images can never determine them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 96, 3, padding=1)
        self.head = nn.Linear(96, 2)

    def forward(self, x):
        return self.head(F.relu(self.c2(F.relu(self.c1(x)))).mean((2, 3)))


def test_a_folder_without_splits_is_measured_whole(tmp_path):
    root = image_folder(tmp_path / "photos", per_class=20)  # 3 classes × 20 = 60 images, no split
    splits = load_data(f"imagefolder:{root}", image_size=8)
    df = nonlinearity_signature(WideConv(), splits, n_samples=512)
    assert (df.attrs["meta"]["n"], df.attrs["meta"]["n_total"]) == (60, 60)  # not the 20 % (12)
    assert df.attrs["meta"]["data"].endswith(":all")
    assert len(splits.with_split("test").measured()) == 12 and len(splits.measured("train")) == 48
    # a source with its own split keeps it: the built-in sets' test split is the one training holds out
    assert len(load_data("digits").measured()) == len(load_data("digits").test) == 359
    (tmp_path / "split" / "train").mkdir(parents=True)
    image_folder(tmp_path / "split" / "train", per_class=4)
    image_folder(tmp_path / "split" / "test", per_class=2)
    assert len(load_data(f"imagefolder:{tmp_path / 'split'}", image_size=8).measured()) == 6
    # a text file is the user's evaluation data too: 100 rows, 100 measured (not 20)
    pytest.importorskip("transformers")
    import _real_formats as rf

    texts = load_data(f"text:{rf.text_csv(tmp_path / 'reviews.csv', n=100)}",
                      tokenizer=str(rf.tokenizer(tmp_path / "tok")))  # fmt: skip
    assert len(texts.measured()) == 100 and texts.measured_split() == "all"


def test_the_signature_is_determined_at_a_few_dozen_images():
    x = torch.randn(40, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    pooled = nonlinearity_signature(WideConv(), x, samples="pooled")
    assert (pooled["status"] == "under_determined").all()  # n = 40 <= d = 64, 96
    assert "give at least 97 inputs" in pooled["error"].iloc[1] and "positions" in pooled["error"].iloc[1]
    positions = nonlinearity_signature(WideConv(), x)
    assert (positions["status"] == "ok").all()
    assert positions["n"].tolist() == [2048, 2048] and positions["d"].tolist() == [64, 96]


def test_nothing_scored_is_no_result_with_a_remedy_not_ok(digits):
    x, y = torch.randn(40, 3, 12, 12, generator=torch.Generator().manual_seed(1)), torch.arange(40) % 2
    report = scan(WideConv(), (x, y), ["nonlinearity"], progress=False,
                  options={"nonlinearity": {"samples": "pooled"}})  # fmt: skip
    res = report.results["nonlinearity"]
    assert res.status == "no_result"
    assert "under_determined" in res.reason and "give at least 97 inputs" in res.reason
    assert "nonlinearity" in report.failed  # the CLI exits 3 for it, as for a failed lens
    ok = scan(WideConv(), (x, y), ["nonlinearity"], progress=False)
    assert ok.results["nonlinearity"].status == "ok"


def test_cli_exits_3_when_no_site_is_scored(trained, tmp_path):
    from netxray.cli import app
    from netxray.models import save_checkpoint

    ckpt = tmp_path / "mlp"
    save_checkpoint(trained("mlp"), ckpt)
    args = ["scan", str(ckpt), "--data", "digits", "--lenses", "nonlinearity", "--samples", "pooled",
            "--n-samples", "5", "--quiet"]  # fmt: skip
    failed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert failed.exit_code == 3, failed.output
    assert "no_result" in failed.output or "no site has a meaningful score" in failed.output
    allowed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--allow-partial"])
    assert allowed.exit_code == 0, allowed.output
    summary = json.loads((tmp_path / "b" / "results.json").read_text())["summary"]["nonlinearity"]
    assert summary["status"] == "no_result"


def test_non_finite_sites_blame_inputs_or_parameters():
    x = torch.randn(64, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    bad_x = x.clone()
    bad_x[3, 0, 1, 1] = float("nan")
    df = nonlinearity_signature(WideConv(), bad_x)
    assert (df["status"] == "non_finite").all()
    assert "inputs contain 1 NaN/inf" in df["error"].iloc[0] and "parameters are not" in df["error"].iloc[0]
    assert "inputs" in df.attrs["summary"]["no_result"]
    model = WideConv()
    with torch.no_grad():
        model.c1.weight[0, 0, 0, 0] = float("nan")
    df = nonlinearity_signature(model, x)
    assert (df["status"] == "non_finite").all() and "c1.weight" in df["error"].iloc[0]


def test_labels_that_are_not_classes_are_refused(tmp_path):
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(120, 5, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="regression target"):
        modularity_curve(model, (x, torch.randn(120)), layers=["1"], n=60)
    with pytest.raises(ValueError, match="single sample"):
        modularity_curve(model, (x, torch.arange(120)), layers=["1"], n=60)  # ids as labels
    # integral floats are class ids; a few singleton classes are left out, and said
    labels = (torch.arange(120) % 2).float()
    labels[:3] = torch.tensor([5.0, 6.0, 7.0])
    curve = modularity_curve(model, (x, labels), layers=["1"], n=60, repeats=2)
    assert (curve["status"] == "ok").all() and "3 samples of 3 classes" in curve.attrs["meta"]["singleton_note"]
    # a CSV with blank label cells, or a numeric column that is a regression target
    for name, cells in (("blank.csv", ["pos", "", "neg", " "]), ("float.csv", ["0.5", "1.25", "3", "2"])):
        path = tmp_path / name
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([[f"text {i}", c] for i, c in enumerate(cells * 5)])
        with pytest.raises(DataError, match="column 'label'"):
            load_data(f"text:{path}", tokenizer=_TinyTokenizer())


class _TinyTokenizer:
    """Never reached: the labels are read and refused before anything is tokenized."""

    def __call__(self, *args, **kwargs):  # pragma: no cover
        raise AssertionError("labels should have been refused first")


def test_scales_and_words_a_reader_can_trust(trained, digits):
    assert format_power_of_ten(27050.4) == "10^27 050" and format_power_of_ten(6.559763) == "10^6.56"
    note = ItemizedNote("x", [("norm", "normalization layer (norm): no edges between units")])
    assert note.groups()[0][0] == "normalization layer (‹name›): no edges between units"
    report = scan(trained("mlp"), digits, ["modularity", "symmetry"], progress=False, repeats=2)
    card = report.results["modularity"].summary
    q_rel, q_max = card["Q/Q_max last layer"], card["ceiling Q_max (10 classes)"]
    assert card["Q last layer"] == pytest.approx(q_rel * q_max, rel=0.05)
    assert 0.85 < q_max < 0.91  # 10 nearly balanced classes
    howto = " ".join(report.results["modularity"].howto)
    assert f"{q_max:.3f} for these 10 classes" in howto and "≈ 0.9 is the ceiling" not in howto
    group = next(t for t in report.results["symmetry"].howto if "|G| =" in t).split("|G| =")[1]
    assert "e+" not in group and group.strip().startswith("10^")  # 10^…, never 10^2.7e+04


def test_only_ok_points_are_filled_in_the_signature_plot():
    x = torch.randn(40, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    df = nonlinearity_signature(WideConv(), x, samples="pooled")
    fig = plot_signatures(df)
    ax = fig.axes[0]
    filled = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_markerfacecolor() != "white"]
    hollow = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    assert sum(len(ln.get_xdata()) for ln in filled) == 0  # nothing ok: nothing drawn as a score
    assert sum(len(ln.get_xdata()) for ln in hollow) == 2
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("not determined" in t for t in labels)


def test_a_report_card_says_n_of_the_data(tmp_path):
    root = image_folder(tmp_path / "photos", per_class=20)
    splits = load_data(f"imagefolder:{root}", image_size=8)
    report = scan(WideConv(), splits, ["nonlinearity"], progress=False)
    assert report.results["nonlinearity"].summary["n"] == "60 of 60 images"




def test_a_model_whose_outputs_are_not_the_data_classes_is_named_and_given_a_new_head(digits):
    from netxray.lenses.pruning import prune_study

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 1000))  # a "pretrained" 1 000-way head, 10 classes here  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="1000 outputs but the data has 10 classes.*--new-head"):
        prune_study(model, digits, finetune_epochs=0, repeats=2, n=100)
    study = prune_study(model, digits, finetune_epochs=0, repeats=2, n=100, new_head=True)
    assert "head '5' (1000 outputs) was replaced by a 10-way Linear" in study.summary["new_head"]
    assert study.summary["acc_original"] > 0.3  # a fitted head on the digits' classes, not 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's model


def test_report_notes_say_why_in_words_not_exception_classes(digits):
    from netxray.report.runners import _reason

    assert _reason(ValueError("k must be smaller than n")) == "k must be smaller than n"
    assert "Error" not in _reason(KeyError("missing")) and "unexpected" in _reason(ZeroDivisionError("x"))
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    report = scan(conv, digits, ["symmetry"], progress=False)
    notes = " ".join(str(n) for n in report.results["symmetry"].notes)
    assert "Covering bounds not computed: " in notes and "ValueError" not in notes


def test_a_site_that_one_sample_reached_is_too_few_samples_not_an_error():
    class Routed(nn.Module):  # the second branch runs on the samples whose first feature is largest
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(4, 6), nn.Linear(4, 6)

        def forward(self, x):
            out = torch.relu(self.a(x))
            pick = x[:, 0] == x[:, 0].max()
            return out + torch.zeros_like(out).index_put((pick,), torch.tanh(self.b(x[pick])))

    df = nonlinearity_signature(Routed(), torch.randn(50, 4, generator=torch.Generator().manual_seed(0)))
    assert df["status"].tolist() == ["ok", "too_few_samples"] and (df["n"] == [50, 1]).all()
