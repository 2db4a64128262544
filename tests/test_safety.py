"""Safe by construction (issue 20): the bad-input suite of a hostile or careless user.

One test per case; each failed on the main branch before issue 20 and passes after:
- a checkpoint is data, never instructions: no code runs (a marker file), no option outside the
  per-source allow-list, no path outside the checkpoint, the weights hash is required, and no
  config allocates beyond the model its weights describe (fuzzed with hypothesis);
- ``--out`` deletes and overwrites only what netxray wrote (ownership proven by hashes);
- bounded memory, one clear line instead of a traceback, and failing before the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netxray.models import build_model, load, save_checkpoint

# --------------------------------------------------------------------------- checkpoints are data

MARKER_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("code ran")
"""


def _plant_code(folder: Path, marker: Path) -> None:
    """Python files beside the weights that leave ``marker`` behind if anything imports them."""
    for name in ("modeling_evil.py", "configuration_evil.py", "__init__.py", "model.py", "sitecustomize.py"):
        (folder / name).write_text(MARKER_CODE.format(marker=str(marker)))


def _hf_dir(path: Path, marker: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=32, num_labels=3,
                                  architectures=["BertForSequenceClassification"])  # fmt: skip
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(cfg).save_pretrained(path)
    _plant_code(path, marker)
    return path


def _rewrite(ckpt: Path, **changes) -> dict:
    rec = json.loads((ckpt / "config.json").read_text())
    for key, value in changes.items():
        if value is _DELETE:
            rec.pop(key, None)
        else:
            rec[key] = value
    (ckpt / "config.json").write_text(json.dumps(rec))
    return rec


_DELETE = object()


def _one_clear_line(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, ValueError), f"{type(exc).__name__}: {text}"
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def test_checkpoint_with_trust_remote_code_runs_no_code(tmp_path):
    import netxray

    marker = tmp_path / "MARKER"
    model = netxray.load(f"hf:{_hf_dir(tmp_path / 'bert', marker)}")
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    assert json.loads((ckpt / "config.json").read_text())["model"]["source"] == "hf:hf"
    assert not any(p.suffix == ".py" for p in ckpt.rglob("*"))  # only data was copied in
    loaded = load(ckpt)  # the intended model, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True))
    again = load(save_checkpoint(loaded, tmp_path / "again"))  # saved again: self-contained too
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True))
    _plant_code(ckpt, marker)
    _plant_code(ckpt / "hf", marker)
    hf_cfg = json.loads((ckpt / "hf" / "config.json").read_text())
    (ckpt / "hf" / "config.json").write_text(json.dumps({
        **hf_cfg, "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                               "AutoModel": "modeling_evil.EvilModel"}}))  # fmt: skip
    load(ckpt)  # an auto_map in the copied config is not followed: the built-in Bert class is used
    for kwargs in ({"code_revision": "main"}, {"revision": "abc"}, {"trust_remote_code": True}):
        _rewrite(ckpt, model={"source": "hf:hf", "kwargs": kwargs, "task": None, "removed_blocks": []})
        with pytest.raises(ValueError) as info:
            load(ckpt)
        assert f"model.kwargs.{next(iter(kwargs))} is refused" in _one_clear_line(info.value)
    # the CLI and netxray.load take the same path
    from typer.testing import CliRunner

    from netxray.cli import app

    result = CliRunner().invoke(app, ["scan", str(ckpt), "--out", str(tmp_path / "rep"), "--quiet"])
    assert result.exit_code == 1 and "trust_remote_code is refused" in result.output, result.output
    assert "Traceback" not in result.output
    assert not marker.exists(), "code shipped beside the weights ran"


def test_checkpoint_paths_outside_the_folder_and_unknown_keys_are_refused(tmp_path):
    marker = tmp_path / "MARKER"
    elsewhere = _hf_dir(tmp_path / "elsewhere", marker)
    ckpt = save_checkpoint(build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2}), tmp_path / "c")
    (ckpt / "link").symlink_to(elsewhere)
    cases = {
        f"hf:{elsewhere}": "outside the checkpoint",
        "hf:../elsewhere": "outside the checkpoint",
        "hf:link": "outside the checkpoint",  # a link inside that points out
        "hf:~/x": "outside the checkpoint",
        f"{tmp_path}/net.py:make": "refused",
        str(ckpt): "refused",
        "torchvision:../../x": "expected a torchvision model name",
    }
    (ckpt / "inside").mkdir()
    (ckpt / "inside" / "config.json").symlink_to(elsewhere / "config.json")
    cases["hf:inside"] = "links outside the checkpoint"
    for source, expected in cases.items():
        _rewrite(ckpt, model={"source": source, "kwargs": {}})
        with pytest.raises(ValueError) as info:
            load(ckpt)
        assert expected in _one_clear_line(info.value), source
    for model, key in (({"source": "torchvision:resnet18", "kwargs": {"num_classes": 10**9}}, "num_classes"),
                       ({"source": "torchvision:resnet18", "kwargs": {"block": "x"}}, "block"),
                       ({"source": "timm:resnet18", "weights": "x"}, "weights"),
                       ({"source": "torchvision:resnet18", "hook": 1}, "hook")):  # fmt: skip
        _rewrite(ckpt, model=model)
        with pytest.raises(ValueError) as info:
            load(ckpt)
        assert key in _one_clear_line(info.value)
    _rewrite(ckpt, model={"arch": "mlp", "input_shape": [4], "num_classes": 2}, post_load="x")
    with pytest.raises(ValueError, match="post_load is refused"):
        load(ckpt)
    assert not marker.exists()


def test_checkpoint_without_weights_hash_is_refused(tmp_path):
    ckpt = save_checkpoint(build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2}), tmp_path / "c")
    _rewrite(ckpt, weights_sha256=_DELETE)
    with pytest.raises(ValueError) as info:
        load(ckpt)
    assert "weights_sha256 is missing" in _one_clear_line(info.value)


def test_checkpoint_config_bigger_than_its_weights_allocates_nothing(tmp_path):
    """A config describing a 3 GB model beside 100 bytes of weights (hash matching): refused from
    the shapes alone, in a child whose address space cannot hold the described model."""
    import resource

    ckpt = save_checkpoint(build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [3]}),
                           tmp_path / "c")  # fmt: skip
    _rewrite(ckpt, model={"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [200_000_000]})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize"))
            limit = vm * 1024 + 512 * 2**20  # what it uses now + 512 MiB
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                load(ckpt)
                msg = "loaded"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                msg = f"{type(exc).__name__}: {exc}"
            os.write(w, msg.encode()[:4000])
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        msg = f.read()
    os.waitpid(pid, 0)
    assert msg.startswith("CheckpointError") and "does not fit" in msg and "shape" in msg, msg


# hostile values and keys the fuzzer draws from, beside random JSON
_HOSTILE_SOURCES = ["hf:hf", "hf:/etc", "hf:..", "hf:../x", "hf:~", "torchvision:resnet18",
                    "torchvision:../../etc/passwd", "timm:resnet18", "timm:", "hf:", "net.py:make",
                    "model.py:Net", "/etc/passwd", ".", "torchvisio:resnet18", "", "hf:hf\0x",
                    "torchvision:" + "a" * 500]  # fmt: skip
_KEYS = ["num_classes", "num_labels", "dropout", "trust_remote_code", "revision", "code_revision",
         "in_chans", "img_size", "image_size", "weights", "cache_dir", "global_pool", "aux_logits",
         "__class__", "block", "norm_layer"]  # fmt: skip
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from(_HOSTILE_SOURCES),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_model_record = st.one_of(
    _json,
    # near the genuine record (resnet18 with 3 classes): loads exactly when it is the genuine one
    st.fixed_dictionaries({"source": st.just("torchvision:resnet18"),
                           "kwargs": st.fixed_dictionaries({"num_classes": st.just(3) | st.integers(-5, 2**40)})},
                          optional={"task": st.none(), "removed_blocks": st.just([])}),  # fmt: skip
    st.fixed_dictionaries(
        {"source": st.sampled_from(_HOSTILE_SOURCES) | st.text(max_size=30)},
        optional={"kwargs": st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _json, max_size=3) | _json,
                  "task": st.sampled_from([None, "base", "sequence-classification", "evil"]) | _json,
                  "removed_blocks": st.lists(st.fixed_dictionaries(
                      {"path": st.sampled_from(["layer1.0", "", "..", "fc"]) | st.text(max_size=10)},
                      optional={"out_type": st.sampled_from(["tensor", "tuple:2", "tuple:99999999999"]) | _json,
                                "removed": _json}), max_size=3) | _json,
                  "extra": _json}),  # fmt: skip
    st.fixed_dictionaries({"arch": st.sampled_from(["mlp", "cnn", "resnet", "vit", "evil"])},
                          optional={"input_shape": st.lists(st.integers(-1, 10**6), max_size=3) | _json,
                                    "num_classes": st.integers(-1, 10**12) | _json,
                                    "widths": st.lists(st.integers(-1, 10**10), max_size=3) | _json,
                                    "activation": st.sampled_from(["relu", "os.system"]) | _json}),
)


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    """A genuine checkpoint (a pruned-source-free resnet18 with 3 classes) and a place for code."""
    import netxray

    root = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    ckpt = save_checkpoint(netxray.load("torchvision:resnet18", num_classes=3), root / "ckpt")
    marker = root / "MARKER"
    _plant_code(ckpt, marker)
    return ckpt, marker, _peak_rss()


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=_model_record, extra=st.dictionaries(st.sampled_from(["trust_remote_code", "weights_file", "hook", "dtype"]),
                                                  _json, max_size=2), drop_hash=st.booleans())  # fmt: skip
def test_fuzzed_checkpoint_configs_load_the_intended_model_or_fail_in_one_line(fuzz_base, tmp_path_factory,
                                                                              model, extra, drop_hash):
    ckpt, marker, peak_before = fuzz_base
    work = tmp_path_factory.mktemp("case") / "ckpt"
    shutil.copytree(ckpt, work)
    rec = json.loads((work / "config.json").read_text())
    rec.update(extra, model=model)
    if drop_hash:
        del rec["weights_sha256"]
    (work / "config.json").write_text(json.dumps(rec))
    try:
        loaded = load(work)
    except ValueError as exc:
        _one_clear_line(exc)
    else:  # only the intended model loads: the tensors of the file, nothing more
        from safetensors.torch import load_file

        saved = load_file(work / "model.safetensors")
        state = loaded.state_dict()
        assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
        assert hashlib.sha256((work / "model.safetensors").read_bytes()).hexdigest() == rec["weights_sha256"]
    assert not marker.exists(), "code shipped beside the weights ran"
    # the weights are 45 MB; a config that built what it claims (num_classes 2**70, widths 10**10,
    # ...) would raise the process's peak by gigabytes, or fail to allocate
    assert _peak_rss() - peak_before < 2**30, "a hostile config allocated beyond its weights"
    shutil.rmtree(work.parent)


# --------------------------------------------------------------------------- --out: only what netxray wrote


def _small_report(title: str = "r"):
    from torch import nn

    from netxray.report import scan

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.rand(60, 1, 4, 4), torch.arange(60) % 3
    return scan(model, (x, y), lenses=("parameters",), progress=False, n_samples=60, title=title)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_out_with_another_tools_index_and_results_is_refused(tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<h1>my site</h1>")
    (out / "results.json").write_text(json.dumps({"accuracy": 0.9}))
    before = _snapshot(out)
    with pytest.raises(FileExistsError) as info:
        _small_report().save(out)
    assert "\n" not in str(info.value) and "not written by a netxray report" in str(info.value)
    assert _snapshot(out) == before


def test_a_results_json_listing_user_files_deletes_nothing(tmp_path):
    """A results.json with a ``files`` list (another tool's, or hand-made) once made netxray
    delete every file it named; ownership now needs netxray's manifest with matching hashes."""
    out = tmp_path / "rep"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "table.csv").write_text("a,b\n1,2\n")
    (out / "sub" / "data.txt").write_text("mine too")
    user = _snapshot(out)
    listed = ["notes.txt", "table.csv", "sub/data.txt", "index.html", "results.json"]
    (out / "results.json").write_text(json.dumps({"title": "x", "files": listed, "tables": ["table"]}))
    with pytest.raises(FileExistsError):  # a foreign results.json is the user's: refused
        _small_report().save(out)
    assert {k: v for k, v in _snapshot(out).items() if k in user} == user
    # a manifest that claims to be netxray's, with hashes that do not match: still the user's
    (out / "results.json").write_text(json.dumps({"generator": "netxray", "files": listed,
                                                  "file_sha256": {f: "0" * 64 for f in listed}}))  # fmt: skip
    _small_report("second").save(out)
    assert {k: v for k, v in _snapshot(out).items() if k in user} == user
    assert "second" in (out / "index.html").read_text()


def test_a_report_file_the_user_edited_is_theirs_and_stays(tmp_path):
    out = tmp_path / "rep"
    _small_report("first").save(out)
    manifest = json.loads((out / "results.json").read_text())
    assert manifest["generator"] == "netxray" and set(manifest["file_sha256"]) == set(manifest["files"]) - {"results.json"}
    (out / "parameters.csv").write_text("edited by hand")
    with pytest.raises(FileExistsError, match="parameters.csv"):
        _small_report("second").save(out)
    assert (out / "parameters.csv").read_text() == "edited by hand"
    (out / "parameters.csv").unlink()
    (out / "empty-folder-of-mine").mkdir()
    _small_report("third").save(out)  # unedited files of the earlier report are replaced
    assert (out / "empty-folder-of-mine").is_dir() and "third" in (out / "index.html").read_text()


@pytest.mark.parametrize("where", ["/", "/etc", "/usr/share/x", "HOME"])
def test_out_at_root_home_or_a_system_folder_is_refused_before_any_work(where, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import netxray.report
    from netxray.cli import app

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    out = str(tmp_path / "home") if where == "HOME" else where
    report = _small_report()

    def no_work(*_a, **_k):
        raise AssertionError("the scan ran")

    monkeypatch.setattr(netxray.report, "scan", no_work)
    ckpt = save_checkpoint(build_model({"arch": "mlp", "input_shape": [64], "num_classes": 10}), tmp_path / "c")
    result = CliRunner().invoke(app, ["scan", str(ckpt), "--out", out, "--quiet"])
    assert result.exit_code == 1 and "refused" in result.output and "Traceback" not in result.output, result.output
    with pytest.raises(PermissionError, match="refused"):
        report.save(out)
    assert not (tmp_path / "home" / "index.html").exists()


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil as sh

    from typer.testing import CliRunner

    import netxray.report
    from netxray.cli import app

    full = sh._ntuple_diskusage(10**9, 10**9 - 4096, 4096)
    monkeypatch.setattr("netxray.report._saving.shutil.disk_usage", lambda _p: full)
    with pytest.raises(OSError, match="not enough free space"):
        _small_report().save(tmp_path / "rep")
    assert not (tmp_path / "rep").exists()

    def no_work(*_a, **_k):
        raise AssertionError("the scan ran")

    monkeypatch.setattr(netxray.report, "scan", no_work)
    ckpt = save_checkpoint(build_model({"arch": "mlp", "input_shape": [64], "num_classes": 10}), tmp_path / "c")
    result = CliRunner().invoke(app, ["scan", str(ckpt), "--out", str(tmp_path / "rep2"), "--quiet"])
    assert result.exit_code == 1 and "not enough free space" in result.output, result.output


# --------------------------------------------------------------------------- bounded memory


def _wide(units: int):
    """A ``units``-wide MLP whose weights are never initialised (untouched pages: no memory)."""
    from torch import nn

    return nn.Sequential(nn.utils.skip_init(nn.Linear, 4, units), nn.ReLU(), nn.utils.skip_init(nn.Linear, units, 2))


@pytest.mark.parametrize("lens", ["node_strengths", "symmetry_group"])
def test_a_ten_million_unit_layer_is_estimated_before_anything_is_allocated(lens):
    """The issue's case: a 10^7-unit Linear took 8.2 GB with no warning. Now the estimate comes
    first: past 2 GiB a CostWarning (made an error here, so nothing runs after it), past the
    machine's memory a CostError — both naming the option that makes it feasible."""
    import warnings

    import netxray
    from netxray.measures.cost import CostError, CostWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", CostWarning)
        with pytest.raises((CostWarning, CostError)) as info:
            getattr(netxray, lens)(_wide(10**7))
    text = str(info.value)
    assert "20000006 units" in text and "GiB" in text and ("--lenses" in text), text


def test_an_oversized_image_does_not_set_the_default_size(tmp_path):
    """One 8000x8000 photo made every image 8000x8000 (3.8 GB for 2048 samples); the default is
    now the model's declared size, else the first image's side capped at 224, with a warning."""
    Image = pytest.importorskip("PIL.Image")
    from netxray.data.sources import DEFAULT_MAX_IMAGE_SIZE, load_imagefolder

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(tmp_path / c / f"{i}.png")
    Image.new("RGB", (3000, 3000)).save(tmp_path / "a" / "0.png")  # the first file read
    with pytest.warns(UserWarning, match="resized to 224x224"):
        splits = load_imagefolder(tmp_path)
    assert splits.test[0][0].shape == (3, DEFAULT_MAX_IMAGE_SIZE, DEFAULT_MAX_IMAGE_SIZE)
    assert load_imagefolder(tmp_path, preprocessing={"size": 32}).test[0][0].shape == (3, 32, 32)
    # the CLI takes a built-in model's input_shape as its declared size
    from netxray.cli._common import load_cli_data

    model = build_model({"arch": "cnn", "input_shape": [3, 16, 16], "num_classes": 2})
    assert load_cli_data(f"imagefolder:{tmp_path}", 0, model=model).test[0][0].shape == (3, 16, 16)


# --------------------------------------------------------------------------- one line, not a traceback


def test_meta_device_model_is_one_clear_line(tmp_path):
    from torch import nn
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.report import scan

    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    with pytest.raises(ValueError) as info:
        scan(model, (torch.rand(40, 64), torch.arange(40) % 10), lenses=("parameters",), progress=False)
    assert "meta device" in _one_clear_line(info.value)
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n\ndef make():\n    with torch.device('meta'):\n"
        "        return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))\n"
    )
    result = CliRunner().invoke(app, ["scan", f"{tmp_path / 'net.py'}:make", "--out", str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1 and "meta device" in result.output and "Traceback" not in result.output, result.output
    assert result.output.count("\n") == 1


def test_hf_dir_with_pickled_weights_is_one_clear_line(tmp_path):
    transformers = pytest.importorskip("transformers")
    import netxray

    cfg = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=32)  # fmt: skip
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert", safe_serialization=False)
    for f in (tmp_path / "bert").glob("*.safetensors"):
        f.unlink()
    torch.save(transformers.BertModel(cfg).state_dict(), tmp_path / "bert" / "pytorch_model.bin")
    with pytest.raises(ValueError) as info:
        netxray.load(f"hf:{tmp_path / 'bert'}")
    assert "pytorch_model.bin, a pickle" in _one_clear_line(info.value)


def test_numpy_string_labels_are_one_clear_line():
    import numpy as np
    from torch import nn

    from netxray.report import scan

    x, y = np.random.default_rng(0).random((30, 4), dtype=np.float32), np.array(["cat", "dog", "emu"] * 10)
    with pytest.raises(TypeError) as info:
        scan(nn.Sequential(nn.Linear(4, 3)), (x, y), lenses=("nonlinearity",), progress=False)
    text = str(info.value)
    assert "\n" not in text and "got strings" in text and "np.unique" in text, text


def _tiny_text_model(path: Path, positions: int) -> Path:
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "very", "film"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                cls_token="[CLS]", sep_token="[SEP]")  # fmt: skip
    fast.save_pretrained(path)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=positions, num_labels=2,
                                  architectures=["BertForSequenceClassification"])  # fmt: skip
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(cfg).save_pretrained(path)
    return path


def test_text_longer_than_the_models_positions_uses_its_limit(tmp_path):
    """The default --max-length was 128 whatever the model: a 32-position model failed with
    'expanded size 128 must match 32', blamed on the model. The default is now min(128, limit)."""
    from typer.testing import CliRunner

    from netxray.cli import app

    model = _tiny_text_model(tmp_path / "bert", positions=32)
    rows = ["text,label"] + [f"{' '.join(['very'] * 100)} {'good' if i % 2 else 'bad'} film,{i % 2}" for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    args = ["signature", f"hf:{model}", "--data", f"text:{tmp_path / 't.csv'}", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "sig.csv")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "sig2.csv"), "--max-length", "100"])
    assert result.exit_code == 1 and "the model has 32 positions" in result.output, result.output


# --------------------------------------------------------------------------- fail before the work


def test_k_against_n_is_checked_before_any_lens_runs(monkeypatch):
    from torch import nn

    from netxray.report import runners, scan

    def no_lens(*_a, **_k):
        raise AssertionError("a lens ran")

    monkeypatch.setattr(runners, "run_lens", no_lens)
    x, y = torch.rand(30, 4), torch.arange(30) % 3
    with pytest.raises(ValueError) as info:
        scan(nn.Sequential(nn.Linear(4, 3)), (x, y), lenses=("parameters", "modularity"), k=30, progress=False)
    assert "k = 30" in _one_clear_line(info.value)


def test_a_typod_source_prefix_says_did_you_mean(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import netxray
    from netxray.cli import app

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="did you mean torchvision:resnet18"):
        netxray.load("torchvisio:resnet18")
    result = CliRunner().invoke(app, ["scan", "timn:resnet18", "--out", "r", "--quiet"])
    assert result.exit_code == 1 and "did you mean timm:resnet18" in result.output, result.output
    assert "checkpoint not found" not in result.output


def test_commands_writing_fixed_names_into_a_folder_replace_only_their_own(tmp_path):
    """``bounds --out DIR`` (like ``symmetry --out``, ``compare-signatures --out``) wrote
    bounds.csv over whatever was there; now only a file netxray wrote (hash recorded) is replaced,
    and a report saved into the folder later neither refuses nor deletes it."""
    from typer.testing import CliRunner

    from netxray.cli import app

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "bounds.csv").write_text("the user's table")
    result = CliRunner().invoke(app, ["bounds", "--widths", "4,3,2", "--out", str(mine), "--quiet"])
    assert result.exit_code == 1 and "bounds.csv not written by netxray" in result.output, result.output
    assert (mine / "bounds.csv").read_text() == "the user's table"
    ours = tmp_path / "ours"
    for _ in range(2):  # the second run replaces the first run's file
        result = CliRunner().invoke(app, ["bounds", "--widths", "4,3,2", "--out", str(ours), "--quiet"])
        assert result.exit_code == 0, result.output
    table = (ours / "bounds.csv").read_bytes()
    _small_report().save(ours)
    assert (ours / "bounds.csv").read_bytes() == table and (ours / "index.html").exists()


def test_weights_plot_folder_replaces_only_its_own_plots(tmp_path):
    from typer.testing import CliRunner

    from netxray.cli import app

    ckpt = save_checkpoint(build_model({"arch": "mlp", "input_shape": [8], "num_classes": 3, "widths": [6]}),
                           tmp_path / "c")  # fmt: skip
    plots = tmp_path / "plots"
    for _ in range(2):
        result = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"),
                                          "--plot", str(plots), "--quiet"])  # fmt: skip
        assert result.exit_code == 0, result.output
    (plots / "strengths.png").write_bytes(b"my own picture")
    result = CliRunner().invoke(app, ["weights", str(ckpt), "--out", str(tmp_path / "s.csv"), "--plot", str(plots)])
    assert result.exit_code == 1 and "strengths.png not written by netxray" in result.output, result.output
    assert (plots / "strengths.png").read_bytes() == b"my own picture"


def _digits_mlp(tmp_path: Path) -> Path:
    return save_checkpoint(build_model({"arch": "mlp", "input_shape": [64], "num_classes": 10, "widths": [8]}),
                           tmp_path / "c")  # fmt: skip


def test_modularity_side_files_replace_only_their_own(tmp_path):
    """``modularity --out curve.csv`` writes curve.redundant.csv, curve.adversarial.csv, their
    .meta.json and curve.adversarial.png beside the files the user named; they overwrote a user's
    file of that name. Now a rerun replaces netxray's own, and a user's file stays (one line)."""
    from typer.testing import CliRunner

    from netxray.cli import app

    ckpt = _digits_mlp(tmp_path)
    out = tmp_path / "res"
    args = ["modularity", str(ckpt), "--n", "20", "--repeats", "2", "--out", str(out / "curve.csv"),
            "--plot", str(out / "curve.png"), "--adversarial", "0.1", "--quiet"]  # fmt: skip
    for _ in range(2):  # the second run replaces the first run's side files
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    for name in ("curve.redundant.csv", "curve.adversarial.csv", "curve.csv.meta.json", "curve.adversarial.png"):
        (out / name).write_bytes(b"the user's own")
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and f"{out / name} beside it was not written by netxray" in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert (out / name).read_bytes() == b"the user's own"
        (out / name).unlink()


ZOO_GRID = "width=4;depth=1;lr=1e-2;epochs=1;seed=0,1,2,3"


def _zoo(tmp_path: Path) -> Path:
    from typer.testing import CliRunner

    from netxray.cli import app

    result = CliRunner().invoke(app, ["zoo", "train", "--out", str(tmp_path / "z"), "--grid", ZOO_GRID,
                                      "--engine", "serial", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp_path / "z"


def test_zoo_analyze_side_files_and_plots_replace_only_their_own(tmp_path):
    """``zoo analyze --out r.parquet`` writes r.comparisons.csv, r.predictors.csv and
    r.summary.json beside it, and fixed names into --plot: they overwrote the user's files of
    those names. Now a rerun replaces netxray's own, and a user's file stays (one line)."""
    from typer.testing import CliRunner

    from netxray.cli import app

    zoo = _zoo(tmp_path)
    args = ["zoo", "analyze", str(zoo), "--out", str(tmp_path / "r.parquet"), "--plot", str(tmp_path / "plots"),
            "--engine", "serial", "--quiet"]  # fmt: skip
    for _ in range(2):  # the second run replaces the first run's side files and plots
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    for name in ("r.comparisons.csv", "r.predictors.csv", "r.summary.json"):
        (tmp_path / name).write_bytes(b"the user's own")
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert f"{tmp_path / name} beside it was not written by netxray" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert (tmp_path / name).read_bytes() == b"the user's own"
        (tmp_path / name).unlink()
    for name in ("stats_by_class.png", "histograms_mlp.png"):
        (tmp_path / "plots" / name).write_bytes(b"the user's own")
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and f"{name} not written by netxray" in result.output, result.output
        assert (tmp_path / "plots" / name).read_bytes() == b"the user's own"
        (tmp_path / "plots" / name).unlink()


def test_zoo_train_deletes_only_leftovers_it_provably_made(tmp_path):
    """``zoo train`` removed every ``models/.tmp-*`` by name. Now only a directory holding the
    marker netxray wrote into it (naming it) goes; any other is kept and said in one line, and
    a zoo.json that is not netxray's is refused before anything is written."""
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.report import TEMP_MARKER, mark_temp_dir

    zoo = _zoo(tmp_path)
    assert len(list(zoo.glob("models/mlp-*/record.json"))) == 4
    assert not list(zoo.glob("models/*/" + TEMP_MARKER))  # finished models carry no marker
    theirs = zoo / "models" / ".tmp-mine"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("the user's own")
    forged = zoo / "models" / ".tmp-forged"  # a marker copied from elsewhere names another folder
    forged.mkdir()
    (forged / TEMP_MARKER).write_text(json.dumps({"generator": "netxray", "tmp": ".tmp-other"}))
    ours = zoo / "models" / ".tmp-mlp-x-123"  # an interrupted run's: the marker names it
    ours.mkdir()
    mark_temp_dir(ours)
    (ours / "model.safetensors").write_bytes(b"half written")
    result = CliRunner().invoke(app, ["zoo", "train", "--out", str(zoo), "--grid", ZOO_GRID, "--engine", "serial",
                                      "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not ours.exists()
    assert (theirs / "notes.txt").read_text() == "the user's own" and forged.exists()
    assert f"kept {theirs}: not made by netxray" in result.output, result.output
    assert len([line for line in result.output.splitlines() if ".tmp-mine" in line]) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "zoo.json").write_text("the user's own")
    result = CliRunner().invoke(app, ["zoo", "train", "--out", str(other), "--grid", ZOO_GRID, "--quiet"])
    assert result.exit_code == 1 and "zoo.json was not written by netxray" in result.output, result.output
    assert (other / "zoo.json").read_text() == "the user's own" and sorted(other.iterdir()) == [other / "zoo.json"]


def test_signature_meta_json_and_a_foreign_file_manifest_are_kept(tmp_path):
    """``signature --out sig.csv`` writes sig.csv.meta.json beside it, and commands record what
    they wrote in .netxray-files.json: both replaced a user's file of that name. Now a rerun
    replaces netxray's own; a user's .meta.json or .netxray-files.json stays (one line)."""
    from typer.testing import CliRunner

    from netxray.cli import app

    ckpt = _digits_mlp(tmp_path)
    sig = tmp_path / "res" / "sig.csv"
    args = ["signature", str(ckpt), "--n-samples", "64", "--out", str(sig), "--quiet"]
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    meta = tmp_path / "res" / "sig.csv.meta.json"
    meta.write_text("the user's own")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and f"{meta} beside it was not written by netxray" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and meta.read_text() == "the user's own"
    meta.unlink()
    manifest = tmp_path / "res" / ".netxray-files.json"
    manifest.write_text('{"my": "own settings"}')
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and ".netxray-files.json beside it was not written" in result.output, result.output
    assert manifest.read_text() == '{"my": "own settings"}'
    result = CliRunner().invoke(app, ["bounds", "--widths", "4,3,2", "--out", str(tmp_path / "res"), "--quiet"])
    assert result.exit_code == 1 and ".netxray-files.json not written by netxray" in result.output, result.output
    assert manifest.read_text() == '{"my": "own settings"}'


def test_report_save_deletes_only_the_leftovers_it_provably_made(tmp_path):
    """A report is built in ``.<out>.netxray-tmp-*`` beside --out; every ``.<out>.netxray-*-*``
    folder there was deleted by name, and a ``.<out>.netxray-journal.json`` read and deleted.
    Now only a folder with the marker netxray wrote into it goes; a user's is kept, and a
    journal that is not netxray's is refused in one line."""
    from netxray.report import TEMP_MARKER, mark_temp_dir

    out = tmp_path / "rep"
    theirs = tmp_path / ".rep.netxray-tmp-1-mine"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("the user's own")
    ours = tmp_path / ".rep.netxray-tmp-2-dead"  # a save killed half-way
    ours.mkdir()
    mark_temp_dir(ours)
    (ours / "index.html").write_text("half written")
    for _ in range(2):  # a new report, then the swap over the earlier one
        _small_report().save(out)
    assert not ours.exists() and (theirs / "notes.txt").read_text() == "the user's own"
    assert not (out / TEMP_MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name, "rep"]
    (out / "mine.txt").write_text("the user's own")  # the next save merges into the folder
    _small_report().save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name, "rep"]
    journal = tmp_path / ".rep.netxray-journal.json"
    journal.write_text("the user's own")
    with pytest.raises(FileExistsError) as info:
        _small_report().save(out)
    assert "\n" not in str(info.value) and "netxray-journal.json beside it was not written" in str(info.value)
    assert journal.read_text() == "the user's own" and (out / "mine.txt").exists()


def test_report_lock_beside_out_is_never_a_users_file(tmp_path):
    """The report's lock ``.<out>.netxray-lock`` beside --out was opened, truncated and deleted
    whatever it held. Now a file of that name netxray did not write stays, and the save says so
    in one line; a lock left by a killed netxray run (its pid) is taken over as before."""
    from typer.testing import CliRunner

    from netxray.cli import app

    out = tmp_path / "rep"
    lock = tmp_path / ".rep.netxray-lock"
    lock.write_text("the user's own")
    with pytest.raises(FileExistsError) as info:
        _small_report().save(out)
    assert "\n" not in str(info.value) and ".rep.netxray-lock beside it was not written" in str(info.value)
    assert lock.read_text() == "the user's own" and not out.exists()
    result = CliRunner().invoke(app, ["scan", str(_digits_mlp(tmp_path)), "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and "netxray-lock beside it was not written" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and lock.read_text() == "the user's own"
    lock.write_text("12345\n")  # a netxray run killed while it held the lock
    _small_report().save(out)
    _small_report().save(out)
    assert (out / "index.html").exists() and not lock.exists()


def test_the_write_check_before_a_scan_opens_no_existing_file(tmp_path, monkeypatch):
    """check_report_out tried writing by opening ``.netxray-write-test-<pid>`` in the folder
    (truncating) and deleting it: a user's file of that name was lost. Now it probes with a fresh
    name of its own and leaves every existing file alone."""
    from netxray.report import check_report_out

    monkeypatch.setattr(os, "getpid", lambda: 4242)
    mine = tmp_path / ".netxray-write-test-4242"
    mine.write_text("the user's own")
    check_report_out(tmp_path / "rep")
    assert mine.read_text() == "the user's own" and sorted(tmp_path.iterdir()) == [mine]


def test_prune_out_checks_the_hf_config_files_of_the_pruned_checkpoint(tmp_path):
    """``prune --out DIR`` of a Hugging Face model also writes DIR/pruned/hf/<its config files>
    (save_checkpoint copies them); they were not in the names checked before the work. Now a
    user's file there is refused in one line before any model is loaded, and kept."""
    from typer.testing import CliRunner

    from netxray.cli import app

    mine = tmp_path / "out" / "pruned" / "hf" / "tokenizer.json"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own")
    result = CliRunner().invoke(app, ["prune", str(tmp_path / "no-model"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "pruned/hf/tokenizer.json not written by netxray" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and mine.read_text() == "the user's own"


def test_demo_replaces_only_cache_entries_netxray_wrote(tmp_path):
    """``netxray demo`` retrained a cache entry that did not load (``overwrite=True``), whatever
    it held. Now an entry is replaced only when its config.json is a netxray checkpoint's; any
    other model.safetensors/config.json there is kept, refused in one line before any training."""
    from typer.testing import CliRunner

    from netxray.cli import app
    from netxray.cli.demo_cmd import DEMO_MODELS, _check_own_entry, _key

    _, arch, knobs, seed = DEMO_MODELS[0]
    entry = tmp_path / "cache" / "demo-models" / f"{arch}-{_key(arch, knobs, seed)}"
    entry.mkdir(parents=True)
    (entry / "config.json").write_text('{"my": "own model"}')
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                                      "--quiet"])  # fmt: skip
    assert result.exit_code == 1 and "config.json not written by netxray" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (entry / "config.json").read_text() == '{"my": "own model"}' and not (tmp_path / "out").exists()
    ours = save_checkpoint(build_model({"arch": "mlp", "input_shape": [8], "num_classes": 3, "widths": [6]}),
                           tmp_path / "ours")  # fmt: skip
    (ours / "model.safetensors").write_bytes(b"damaged")  # netxray's entry, damaged: retrained
    _check_own_entry(ours)
