"""Checkpoints: a directory with ``model.safetensors`` (the weights) and ``config.json``.

``config.json`` holds the model config (enough to rebuild the architecture), the dtype, the
netxray version, metrics and training arguments, and the SHA-256 of ``model.safetensors``.
Both files are written atomically (temp file + fsync + rename), weights first, config last; the
config's hash binds the pair, so a run killed between the two writes leaves either no config or a
config whose hash does not match the new weights — never a checkpoint that loads half-written.
Loading parses JSON and safetensors only: no pickle, no code from files is ever executed.

Example
-------
>>> import tempfile
>>> from netxray.models import build_model, save_checkpoint, load
>>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2, "widths": [3]})
>>> d = save_checkpoint(m, tempfile.mkdtemp() + "/ckpt", metrics={"test_acc": 0.5})
>>> load(d).netxray_config == m.netxray_config
True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import CheckpointError, CheckpointNotFoundError  # re-exported: they lived here
from .._meta import __version__, atomic_write_bytes, atomic_write_text, model_hash

__all__ = ["CheckpointError", "WEIGHTS_FILE", "CONFIG_FILE", "load", "load_config", "save_checkpoint"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "netxray-checkpoint"
FORMAT_VERSION = 1


def _jsonable(value: Any) -> Any:
    # numpy / torch scalars and paths show up in metrics and train args
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, (os.PathLike, torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in {CONFIG_FILE}")


def _expected_layout(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    from . import build_model

    with torch.device("meta"):  # shapes only: no memory, no RNG draws
        ref = build_model(config)
    return {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def _compare_layout(
    got: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], what: str
) -> None:
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:8]}{' …' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
    for k in shapes[:8]:
        problems.append(f"{k}: shape {list(got[k])}, expected {list(expected[k])}")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))


# sources a checkpoint may name: built again by their library, no code from a file is run
_REBUILDABLE = ("torchvision", "timm", "hf")


def source_config(model: nn.Module) -> dict[str, Any]:
    """The checkpoint config of a model that is not built-in: its source and removed blocks.

    ``{"source": "torchvision:resnet18", "kwargs": {...}, "task": None, "removed_blocks":
    [{"path": "layer3.1", "removed": "BasicBlock", "out_type": "tensor"}, ...]}`` — the source
    as ``netxray.load`` read it (or as the checkpoint it was loaded from recorded it), and one
    entry per :class:`~netxray.models._removed.SkipBlock` in the model.
    Raises :class:`CheckpointError` for a model no source string can build again (your own
    ``PATH.py:FACTORY`` code or a model object made in Python): a checkpoint never runs code.
    """
    from ._builders import parse_source
    from ._removed import SkipBlock

    base = (getattr(model, "netxray_checkpoint", None) or {}).get("model") or {}
    if "source" in base:
        source, args = base["source"], {"kwargs": base.get("kwargs", {}), "task": base.get("task")}
    else:
        source = getattr(model, "netxray_source", None)
        args = getattr(model, "netxray_source_args", None) or {}
        if source is None or parse_source(source)[0] not in _REBUILDABLE:
            raise CheckpointError(
                f"save_checkpoint: {type(model).__name__} has no netxray_config (not a built-in netxray "
                "model) and was not loaded from torchvision:NAME, timm:NAME or hf:DIR (netxray.load), "
                f"so no checkpoint can rebuild it (source: {source!r}); save its state_dict and "
                "rebuild it with your code"
            )
        if parse_source(source)[0] == "hf" and args.get("dir"):
            source = f"hf:{args['dir']}"  # absolute: save_checkpoint copies its config in
    removed = [{"path": p, "removed": m.removed, "out_type": m.out_type}
               for p, m in model.named_modules() if isinstance(m, SkipBlock)]  # fmt: skip
    return {"source": source, "kwargs": dict(args.get("kwargs") or {}), "task": args.get("task"),
            "removed_blocks": removed}  # fmt: skip


def _build_from_source(config: dict[str, Any], hf_dir: Path | None = None) -> nn.Module:
    """Build the source of a :func:`source_config` again and remove its removed blocks.

    ``hf_dir``: for an ``hf:`` source, the directory whose ``config.json`` describes the model
    (inside the checkpoint when loading); the model is built from that config alone — no
    weights, no code are read from the directory.
    """
    from ._builders import build_hf_from_config, load_built, parse_source
    from ._removed import SkipBlock

    source = config.get("source")
    if not isinstance(source, str) or parse_source(source)[0] not in _REBUILDABLE:
        raise CheckpointError(f"source {source!r}: expected torchvision:NAME, timm:NAME or hf:DIR")
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"source kwargs must be an object, got {kwargs!r}")
    if parse_source(source)[0] == "hf":
        model = build_hf_from_config(hf_dir if hf_dir is not None else Path(parse_source(source)[1]),
                                     config.get("task"), kwargs)  # fmt: skip
    else:
        model = load_built(source, task=config.get("task"), **kwargs)
    for entry in config.get("removed_blocks") or []:
        path = entry.get("path") if isinstance(entry, dict) else None
        named = dict(model.named_modules())
        if not isinstance(path, str) or not path or path not in named:
            raise CheckpointError(f"removed block {entry!r}: {source} has no module at that path")
        parent_path, _, child = path.rpartition(".")
        parent = named[parent_path] if parent_path else model
        setattr(parent, child, SkipBlock(str(entry.get("removed", type(named[path]).__name__)),
                                         str(entry.get("out_type", "tensor"))))  # fmt: skip
    model.netxray_removed = [e["path"] for e in config.get("removed_blocks") or []]
    return model


def _expected_source_layout(config: dict[str, Any], hf_dir: Path | None = None) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no RNG draws
        ref = _build_from_source(config, hf_dir)
    return {k: tuple(v.shape) for k, v in ref.state_dict().items()}


# the files of an hf: model directory a checkpoint keeps (data only: JSON and vocabularies)
_HF_DATA_FILES = ("config.json", "preprocessor_config.json", "generation_config.json",
                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json")  # fmt: skip
HF_SUBDIR = "hf"


def save_checkpoint(
    model: nn.Module,
    directory: str | os.PathLike[str],
    metrics: dict[str, Any] | None = None,
    *,
    train_args: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``directory`` atomically; return the directory.

    ``model``: a built-in netxray model (its ``netxray_config``), or a model loaded from
    ``torchvision:``, ``timm:`` or ``hf:`` (``netxray.load``), possibly pruned
    (``prune_layers``): then the config records the source, its builder options and the blocks
    that became :class:`~netxray.models._removed.SkipBlock` (:func:`source_config`), and
    :func:`load` builds the source again, removes those blocks and loads the weights.

    The directory is created if needed; other files in it are left alone; an existing checkpoint
    there is replaced. The model is not modified (its weights are copied to CPU for writing).

    >>> import tempfile
    >>> from netxray.models import build_model
    >>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2})
    >>> (save_checkpoint(m, tempfile.mkdtemp()) / "config.json").exists()
    True
    """
    from safetensors.torch import save as st_save

    config = getattr(model, "netxray_config", None)
    state = model.state_dict()
    hf_dir: Path | None = None
    if not isinstance(config, dict):
        # a torchvision / timm / Hugging Face model (pruned or not): its source and removed blocks
        config = source_config(model)
        if config["source"].startswith("hf:"):
            # the model's config (data) goes into the checkpoint: the record names it relatively
            hf_dir = Path(getattr(model, "netxray_hf_dir", None) or config["source"][3:])
            config = {**config, "source": f"hf:{HF_SUBDIR}"}
        from ._checkpoint_schema import check_source_model

        check_source_model(config, "save_checkpoint")  # never write what load would refuse
        expected = _expected_source_layout(config, hf_dir)
        what = f"save_checkpoint: the model's weights do not match {config['source']} with its removed blocks"
    else:
        expected = _expected_layout(config)
        what = f"save_checkpoint: the model's weights do not match its netxray_config ({config.get('arch')})"
    # a model edited after building (e.g. pruned) must not be saved under a config it no longer fits
    _compare_layout({k: tuple(v.shape) for k, v in state.items()}, expected, what)
    dtypes = {v.dtype for k, v in state.items() if v.is_floating_point()}
    if len(dtypes) > 1:
        raise CheckpointError(f"save_checkpoint: mixed floating dtypes {sorted(map(str, dtypes))}")
    dtype = str(dtypes.pop()).replace("torch.", "") if dtypes else "float32"
    # clone: safetensors refuses tensors that share memory, and we never touch the user's tensors
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    blob = st_save(tensors, metadata={"format": FORMAT})
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "netxray_version": __version__,
        "torch_version": torch.__version__,
        "model": config,
        "dtype": dtype,
        "model_hash": model_hash(model),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "metrics": metrics or {},
        "train_args": train_args or {},
    }
    text = json.dumps(record, indent=2, sort_keys=False, default=_jsonable) + "\n"
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"save_checkpoint: {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    if hf_dir is not None:
        for name in _HF_DATA_FILES:
            src = hf_dir / name
            if src.is_file() and src.resolve() != (directory / HF_SUBDIR / name).resolve():
                (directory / HF_SUBDIR).mkdir(exist_ok=True)
                atomic_write_bytes(directory / HF_SUBDIR / name, src.read_bytes())
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)  # weights first ...
    atomic_write_text(directory / CONFIG_FILE, text)  # ... the config (with the hash) commits
    return directory


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    if not p.exists():
        raise CheckpointNotFoundError(
            f"checkpoint not found: {p}; expected a directory with {WEIGHTS_FILE} and "
            f"{CONFIG_FILE}, or a .safetensors file with {CONFIG_FILE} beside it"
        )
    if p.is_dir():
        weights, config = p / WEIGHTS_FILE, p / CONFIG_FILE
    elif p.suffix == ".safetensors":
        weights, config = p, p.parent / CONFIG_FILE
    elif p.name == CONFIG_FILE:
        weights, config = p.parent / WEIGHTS_FILE, p
    else:
        raise CheckpointError(
            f"{p}: not a netxray checkpoint; expected a directory, a .safetensors file or {CONFIG_FILE}"
        )
    for f in (config, weights):
        if not f.is_file():
            raise CheckpointNotFoundError(
                f"incomplete checkpoint: {f} is missing (a checkpoint is {WEIGHTS_FILE} + {CONFIG_FILE})"
            )
    return weights, config


def _read_config(config_path: Path) -> dict[str, Any]:
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(
            f"{config_path}: not a netxray checkpoint config (expected a JSON object with "
            f'"format": "{FORMAT}")'
        )
    if not isinstance(record.get("model"), dict):
        raise CheckpointError(f'{config_path}: expected a "model" object holding the model config')
    version = record.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format_version {version!r} is not supported by netxray "
            f"{__version__} (expected <= {FORMAT_VERSION})"
        )
    from ._checkpoint_schema import check_record

    check_record(record, str(config_path))  # data only: allow-listed keys, options, paths
    return record


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint (model config, metrics, train args) without
    loading the weights.

    >>> import tempfile
    >>> from netxray.models import build_model
    >>> d = save_checkpoint(build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2}),
    ...                     tempfile.mkdtemp(), metrics={"test_acc": 0.9})
    >>> load_config(d)["metrics"]["test_acc"]
    0.9
    """
    _, config_path = _paths(path)
    return _read_config(config_path)


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a checkpointed model exactly (bit-identical weights), in eval mode.

    A built-in model is built from its config; a torchvision / timm / Hugging Face model from
    its recorded source (its library, random init, nothing downloaded), with its removed blocks
    made :class:`~netxray.models._removed.SkipBlock` again, before the weights are loaded.

    ``path``: the checkpoint directory, its ``model.safetensors`` (with ``config.json`` beside
    it) or its ``config.json``. Validates everything before building: missing files, bad JSON,
    weights that do not match the recorded SHA-256 (corrupted or half-replaced), missing or
    unexpected tensors, wrong shapes or dtypes; each error names the file and what was expected.
    The checkpoint record is attached as ``model.netxray_checkpoint``.

    >>> import tempfile, torch
    >>> from netxray.models import build_model
    >>> m = build_model({"arch": "mlp", "input_shape": [4], "num_classes": 2})
    >>> m2 = load(save_checkpoint(m, tempfile.mkdtemp()))
    >>> bool(torch.equal(m.eval()(torch.ones(1, 4)), m2(torch.ones(1, 4))))
    True
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    from . import build_model

    weights_path, config_path = _paths(path)
    record = _read_config(config_path)
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != record["weights_sha256"]:  # required: _read_config
        raise CheckpointError(
            f"{weights_path}: SHA-256 does not match the one recorded in {config_path} "
            "(the weights are corrupted, or were replaced without their config)"
        )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    del blob
    config = record["model"]
    hf_dir = None
    if "source" in config:  # a torchvision / timm / HF model, maybe pruned
        from ._builders import parse_source
        from ._checkpoint_schema import hf_dir_inside

        kind, rest = parse_source(config["source"])
        if kind == "hf":
            hf_dir = hf_dir_inside(rest, config_path.parent, str(config_path))

    def build(meta: bool) -> nn.Module:
        try:
            with torch.device("meta") if meta else contextlib.nullcontext():
                if "source" in config:
                    return _build_from_source(config, hf_dir)
                return build_model(config)
        except CheckpointError:
            raise
        except Exception as exc:  # a builder's own complaint, in one line
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise CheckpointError(f"{config_path}: invalid model config ({type(exc).__name__}: {first})") from None

    # shapes first, on the meta device (no memory): a config that describes a bigger model than
    # its weights is refused before anything is allocated
    _compare_layout(
        {k: tuple(v.shape) for k, v in tensors.items()},
        {k: tuple(v.shape) for k, v in build(meta=True).state_dict().items()},
        f"{weights_path} does not fit the {config.get('arch') or config.get('source')} "
        f"model of {config_path}",
    )
    dtype_name = record.get("dtype", "float32")
    dtype = getattr(torch, str(dtype_name), None) if isinstance(dtype_name, str) else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CheckpointError(f"{config_path}: dtype {dtype_name!r} is not a floating torch dtype")
    model = build(meta=False).to(dtype)
    expected = model.state_dict()
    wrong = [k for k, v in tensors.items() if v.dtype != expected[k].dtype]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{weights_path}: tensor {k} has dtype {tensors[k].dtype}, expected {expected[k].dtype}"
        )
    model.load_state_dict(tensors, strict=True)
    model.netxray_checkpoint = {**record, "path": str(Path(path))}
    if hf_dir is not None:
        model.netxray_hf_dir = str(hf_dir)
    return model.to(device).eval()
