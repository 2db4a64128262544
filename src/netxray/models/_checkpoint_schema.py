"""What a checkpoint's ``config.json`` may say: data, never instructions.

A checkpoint is read as data. Its record may only hold the keys netxray writes; a model built
from a source (``torchvision:NAME``, ``timm:NAME``, ``hf:DIR``) names the source from an
allow-list and its builder options from a per-source allow-list, each with a type and a range.
Everything else is refused with one line naming the key: ``trust_remote_code`` (it would run
code shipped beside the weights), code revisions, paths (an ``hf:`` directory must lie inside
the checkpoint folder), unknown keys. The weights' SHA-256 is required.

The checks run before anything is built, so a hostile record never reaches a model builder;
the builders then run on the meta device first, and the layout of the weights file is compared
with it before any real memory is allocated (:func:`netxray.models.checkpoint.load`).

Example
-------
>>> check_source_kwargs("torchvision", {"num_classes": 10}, "config.json")
{'num_classes': 10}
>>> check_source_kwargs("hf", {"trust_remote_code": True}, "config.json")
Traceback (most recent call last):
...
netxray.models.checkpoint.CheckpointError: config.json: model.kwargs.trust_remote_code is refused: it would run code shipped with the model; a checkpoint is data
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["RECORD_KEYS", "SOURCE_KWARGS", "check_record", "check_source_kwargs", "check_source_model"]

# the keys save_checkpoint writes, and nothing else
RECORD_KEYS = frozenset({
    "format", "format_version", "netxray_version", "torch_version", "model", "dtype", "model_hash",
    "weights_file", "weights_sha256", "metrics", "train_args",
})  # fmt: skip
SOURCE_MODEL_KEYS = frozenset({"source", "kwargs", "task", "removed_blocks"})
REMOVED_BLOCK_KEYS = frozenset({"path", "removed", "out_type"})

MAX_CLASSES = 100_000  # the largest class count a checkpoint may ask a builder for
MAX_IMAGE_SIZE = 4096

# builder options per source: (kind, low, high) for numbers, ("bool",), ("choice", values)
SOURCE_KWARGS: dict[str, dict[str, tuple[Any, ...]]] = {
    "torchvision": {
        "num_classes": ("int", 1, MAX_CLASSES),
        "dropout": ("float", 0.0, 1.0),
        "aux_logits": ("bool",),
        "init_weights": ("bool",),
        "transform_input": ("bool",),
        "image_size": ("int", 8, MAX_IMAGE_SIZE),
    },
    "timm": {
        "num_classes": ("int", 0, MAX_CLASSES),  # timm: 0 is "no head"
        "in_chans": ("int", 1, 64),
        "drop_rate": ("float", 0.0, 1.0),
        "drop_path_rate": ("float", 0.0, 1.0),
        "img_size": ("int", 8, MAX_IMAGE_SIZE),
        "global_pool": ("choice", ("", "avg", "max", "avgmax", "catavgmax", "token", "map")),
    },
    "hf": {
        "num_labels": ("int", 1, MAX_CLASSES),
    },
}

# keys refused with their own reason (any other unknown key is refused as unknown)
_REFUSED = {
    "trust_remote_code": "it would run code shipped with the model; a checkpoint is data",
    "revision": "a code or weights revision; a checkpoint names a fixed model",
    "code_revision": "a code revision; a checkpoint never runs code",
    "auto_map": "it names code to import; a checkpoint never runs code",
    "cache_dir": "a path outside the checkpoint",
    "pretrained_model_name_or_path": "a path outside the checkpoint",
    "weights": "weights come from the checkpoint's own model.safetensors",
    "pretrained": "weights come from the checkpoint's own model.safetensors",
    "checkpoint_path": "a path outside the checkpoint",
    "pretrained_cfg_overlay": "it may name files outside the checkpoint",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")  # a torchvision / timm model name
_MODULE_PATH = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){0,31}$")
_OUT_TYPE = re.compile(r"^(tensor|tuple:[1-9][0-9]?)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HF_TASKS = ("base", "feature-extraction", "sequence-classification", "text-classification",
             "token-classification", "image-classification", "masked-lm", "causal-lm",
             "question-answering", "multiple-choice")  # fmt: skip


def _error(where: str, message: str) -> Exception:
    from netxray._errors import CheckpointError

    return CheckpointError(f"{where}: {message}")


def _check_value(key: str, value: Any, spec: tuple[Any, ...], where: str) -> Any:
    kind = spec[0]
    if kind == "bool":
        if not isinstance(value, bool):
            raise _error(where, f"{key} must be true or false, got {value!r}")
        return value
    if kind == "choice":
        if not isinstance(value, str) or value not in spec[1]:
            raise _error(where, f"{key} must be one of {list(spec[1])}, got {value!r}")
        return value
    lo, hi = spec[1], spec[2]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _error(where, f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:  # fmt: skip
        raise _error(where, f"{key} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def check_source_kwargs(kind: str, kwargs: Any, where: str) -> dict[str, Any]:
    """Validate the builder options of a ``kind`` source (torchvision, timm, hf) against the
    allow-list :data:`SOURCE_KWARGS`; return them. Raises ``CheckpointError`` naming the key."""
    if not isinstance(kwargs, dict):
        raise _error(where, f"model.kwargs must be an object, got {type(kwargs).__name__}")
    allowed = SOURCE_KWARGS[kind]
    for key, value in kwargs.items():
        if key in _REFUSED:
            raise _error(where, f"model.kwargs.{key} is refused: {_REFUSED[key]}")
        if key not in allowed:
            raise _error(where, f"model.kwargs.{_short(key)} is not a known {kind} builder option; "
                                f"expected one of {sorted(allowed)}")  # fmt: skip
        _check_value(f"model.kwargs.{key}", value, allowed[key], where)
    return dict(kwargs)


def _short(value: Any, n: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= n else text[:n] + "…"


def hf_dir_inside(rest: str, root: Path, where: str) -> Path:
    """The ``hf:`` directory ``rest`` of a checkpoint, resolved against the checkpoint folder
    ``root``; refused unless it is (after following links) inside that folder."""
    if "\0" in rest or os.path.isabs(rest) or rest.startswith("~"):
        raise _error(where, f"model.source hf:{_short(rest)} is refused: a path outside the checkpoint "
                            "folder (a checkpoint's hf: directory is relative, inside it)")  # fmt: skip
    root = root.resolve()
    path = (root / rest).resolve()
    if path != root and root not in path.parents:
        raise _error(where, f"model.source hf:{_short(rest)} is refused: a path outside the checkpoint folder")
    for name in ("config.json", "preprocessor_config.json"):  # the files read: inside too (no links out)
        target = (path / name).resolve()
        if (path / name).exists() and root not in target.parents:
            raise _error(where, f"hf:{_short(rest)}/{name} is refused: it links outside the checkpoint folder")
    return path


def check_source_model(model: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate a source model's record (``source``, ``kwargs``, ``task``, ``removed_blocks``)."""
    from ._builders import parse_source

    for key in model:
        if key not in SOURCE_MODEL_KEYS:
            reason = _REFUSED.get(key, f"not a key netxray writes; expected {sorted(SOURCE_MODEL_KEYS)}")
            raise _error(where, f"model.{_short(key)} is refused: {reason}")
    source = model.get("source")
    if not isinstance(source, str) or len(source) > 300:
        raise _error(where, f"model.source must be a string torchvision:NAME, timm:NAME or hf:DIR, got {_short(source)}")
    try:
        kind, rest = parse_source(source)
    except ValueError as exc:
        raise _error(where, f"model.source: {exc}") from None
    if kind not in SOURCE_KWARGS:
        raise _error(where, f"model.source {_short(source)!r} is refused: expected torchvision:NAME, "
                            "timm:NAME or hf:DIR (a checkpoint never names code or another checkpoint)")  # fmt: skip
    if kind != "hf" and not _NAME.match(rest):
        raise _error(where, f"model.source {_short(source)!r}: expected a {kind} model name (letters, "
                            "digits, _ . -)")  # fmt: skip
    check_source_kwargs(kind, model.get("kwargs") or {}, where)
    task = model.get("task")
    if task is not None and (kind != "hf" or task not in _HF_TASKS):
        raise _error(where, f"model.task {_short(task)!r}: expected null"
                            + (f" or one of {list(_HF_TASKS)}" if kind == "hf" else f" for a {kind} model"))  # fmt: skip
    blocks = model.get("removed_blocks") or []
    if not isinstance(blocks, list) or len(blocks) > 10_000:
        raise _error(where, "model.removed_blocks must be a list of {path, removed, out_type} objects")
    for entry in blocks:
        if not isinstance(entry, dict):
            raise _error(where, f"model.removed_blocks: expected objects, got {_short(entry)}")
        for key in entry:
            if key not in REMOVED_BLOCK_KEYS:
                raise _error(where, f"model.removed_blocks[].{_short(key)} is refused: expected "
                                    f"{sorted(REMOVED_BLOCK_KEYS)}")  # fmt: skip
        if not isinstance(entry.get("path"), str) or not _MODULE_PATH.match(entry["path"]):
            raise _error(where, f"model.removed_blocks[].path {_short(entry.get('path'))!r}: expected a module path")
        if not isinstance(entry.get("removed", ""), str) or len(entry.get("removed", "")) > 200:
            raise _error(where, "model.removed_blocks[].removed: expected a class name")
        if not isinstance(entry.get("out_type", "tensor"), str) or not _OUT_TYPE.match(entry.get("out_type", "tensor")):
            raise _error(where, f"model.removed_blocks[].out_type {_short(entry.get('out_type'))!r}: "
                                "expected 'tensor' or 'tuple:N' (N < 100)")  # fmt: skip
    return model


def check_record(record: dict[str, Any], where: str) -> None:
    """Validate a checkpoint record's keys, weights file name and hash (not the model config,
    which :func:`check_source_model` or the built-in families' own checks validate)."""
    for key in record:
        if key not in RECORD_KEYS:
            reason = _REFUSED.get(key, f"not a key netxray writes; expected {sorted(RECORD_KEYS)}")
            raise _error(where, f"{_short(key)} is refused: {reason}")
    sha = record.get("weights_sha256")
    if sha is None:
        raise _error(where, "weights_sha256 is missing; a checkpoint must record the SHA-256 of its "
                            "model.safetensors (save it again with netxray.save_checkpoint)")  # fmt: skip
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise _error(where, f"weights_sha256 {_short(sha)!r}: expected 64 lowercase hex digits")
    weights_file = record.get("weights_file", "model.safetensors")
    if weights_file != "model.safetensors":
        raise _error(where, f"weights_file {_short(weights_file)!r} is refused: the weights are always "
                            "model.safetensors inside the checkpoint folder")  # fmt: skip
    for key in ("metrics", "train_args"):
        if key in record and not isinstance(record[key], dict):
            raise _error(where, f"{key} must be an object, got {type(record[key]).__name__}")
    model = record.get("model")
    if isinstance(model, dict) and "source" in model:
        check_source_model(model, where)
