"""The builders behind the model sources (:mod:`netxray.models.sources`): source strings parsed,
and ``torchvision:``, ``timm:`` and ``hf:`` models built with random init or from local files.

Split from ``sources`` so that a checkpoint (``models.checkpoint``), which rebuilds its source,
and ``sources.load``, which loads checkpoints, do not import each other (an import circle).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netxray._errors import ModelSourceError, require

MODEL_SOURCES = ("CHECKPOINT", "PATH.py:FACTORY", "torchvision:NAME", "timm:NAME", "hf:DIR")

# --task names -> transformers auto class
HF_TASKS: dict[str, str] = {
    "base": "AutoModel",
    "feature-extraction": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "image-classification": "AutoModelForImageClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "multiple-choice": "AutoModelForMultipleChoice",
}


def parse_source(spec: str | os.PathLike[str]) -> tuple[str, str]:
    """``(kind, rest)`` of a model source: kind is ``checkpoint``, ``factory``,
    ``torchvision``, ``timm`` or ``hf``.

    Example:
        >>> parse_source("timm:resnet18"), parse_source("net.py:make"), parse_source("runs/a")
        (('timm', 'resnet18'), ('factory', 'net.py:make'), ('checkpoint', 'runs/a'))
    """
    text = os.fspath(spec)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("torchvision", "timm", "hf"):
        if not rest.strip():
            raise ModelSourceError(f"model {text!r}: expected {prefix}:NAME" + (
                "" if prefix != "hf" else " (hf:DIR, a local model directory)"))  # fmt: skip
        return prefix, rest.strip()
    path_part, sep, name = text.rpartition(":")
    if sep and path_part.endswith(".py"):
        return "factory", text
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]+", prefix) and not os.path.exists(text):
        # a typo'd prefix is not a missing checkpoint: say which prefix was meant
        close = difflib.get_close_matches(prefix.lower(), ("torchvision", "timm", "hf"), n=1, cutoff=0.5)
        if close:
            raise ModelSourceError(
                f"model {text!r}: unknown source prefix {prefix + ':'!r}; did you mean {close[0]}:{rest}? "
                "(known: a checkpoint path, PATH.py:FACTORY, torchvision:NAME, timm:NAME, hf:DIR)"
            )
    return "checkpoint", text


def build_source(
    spec: str | os.PathLike[str], kind: str, rest: str, weights: Any, task: str | None, kwargs: dict[str, Any]
) -> nn.Module:
    """A ``torchvision:``, ``timm:`` or ``hf:`` model (``kind``, ``rest``: :func:`parse_source`
    of ``spec``), built with the random-init builders and its weights, with ``netxray_source``
    and ``netxray_source_args`` (how to build it again) set; not yet in eval mode."""
    if kind == "torchvision":
        model = _torchvision(rest, weights, kwargs)
    elif kind == "timm":
        model = _timm(rest, weights, kwargs)
    else:
        model = _hf(rest, task, kwargs)
    model.netxray_source = os.fspath(spec)
    # how to build it again: a pruned copy is saved as this source + its removed blocks
    model.netxray_source_args = {"kwargs": dict(kwargs), "task": task,
                                 **({"dir": str(Path(rest).expanduser().resolve())} if kind == "hf" else {})}  # fmt: skip
    return model


def load_built(spec: str, *, task: str | None = None, **kwargs: Any) -> nn.Module:
    """What :func:`netxray.models.sources.load` returns for a ``torchvision:``, ``timm:`` or
    ``hf:`` source without weights or device (a checkpoint rebuilds its source this way)."""
    kind, rest = parse_source(spec)
    if task is not None and kind != "hf":
        raise ModelSourceError(f"--task applies to hf:DIR models only, not {os.fspath(spec)!r}")
    if kind not in ("torchvision", "timm", "hf"):
        raise ModelSourceError(f"source {spec!r}: expected torchvision:NAME, timm:NAME or hf:DIR")
    return build_source(spec, kind, rest, None, task, kwargs).eval()


def _load_weights(model: nn.Module, weights: str | os.PathLike[str] | None, source: str) -> None:
    from netxray.models.user_model import check_state_dict, read_weights

    if weights is None:
        model.netxray_weights = None
        return
    state = read_weights(weights)
    check_state_dict(model, state, source=f"--weights {os.fspath(weights)!r} for {source}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    model.netxray_weights = str(Path(weights).expanduser().resolve())


def _torchvision(name: str, weights: Any, kwargs: dict[str, Any]) -> nn.Module:
    tv = require("torchvision.models", f"torchvision:{name}")
    available = tv.list_models()
    if name not in available:
        close = [m for m in available if name.lower() in m.lower()][:8]
        raise ModelSourceError(
            f"torchvision:{name}: no such torchvision model"
            + (f"; did you mean {', '.join(close)}?" if close else f" (one of {len(available)}: "
               f"{', '.join(available[:10])}, …)")
        )  # fmt: skip
    model = tv.get_model(name, weights=None, **kwargs)  # random init: nothing is downloaded
    _load_weights(model, weights, f"torchvision:{name}")
    # torchvision's ImageNet classifiers expect ImageNet-normalized images
    model.netxray_preprocessing = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                   "source": "torchvision (ImageNet statistics)"}  # fmt: skip
    return model


def _timm(name: str, weights: Any, kwargs: dict[str, Any]) -> nn.Module:
    timm = require("timm", f"timm:{name}")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        raise ModelSourceError(
            f"timm:{name}: no such timm model" + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    model = timm.create_model(name, pretrained=False, **kwargs)
    _load_weights(model, weights, f"timm:{name}")
    cfg = timm.data.resolve_data_config({}, model=model)
    size = cfg.get("input_size")
    model.netxray_preprocessing = {
        "mean": list(cfg.get("mean", ())), "std": list(cfg.get("std", ())),
        "size": int(size[-1]) if size else None, "source": f"timm:{name} pretrained_cfg",
    }  # fmt: skip
    return model


# from_pretrained options that would run code or reach outside the directory: never passed on
_HF_REFUSED = ("trust_remote_code", "revision", "code_revision", "cache_dir", "force_download",
               "subfolder", "use_safetensors", "weights_only")  # fmt: skip


def _hf_config(directory: str, path: Path, kwargs: dict[str, Any]) -> Any:
    transformers = require("transformers", f"hf:{directory}")
    refused = [k for k in kwargs if k in _HF_REFUSED]
    if refused:
        raise ModelSourceError(
            f"hf:{directory}: option {refused[0]!r} is refused: netxray reads only the directory's "
            "config and safetensors weights and never runs a repository's own code"
        )
    if not (path / "config.json").is_file():
        raise ModelSourceError(
            f"hf:{directory}: expected a local Hugging Face model directory with config.json "
            "(written by model.save_pretrained(DIR)); nothing is downloaded"
        )
    try:
        return transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False,
                                                       **{k: v for k, v in kwargs.items() if k == "num_labels"})  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelSourceError(f"hf:{directory}: cannot read config.json ({first})") from None


def _hf_class(transformers: Any, config: Any, task: str | None) -> Any:
    if task is not None:
        if task not in HF_TASKS:
            raise ModelSourceError(f"--task {task!r}: expected one of {', '.join(HF_TASKS)}")
        return getattr(transformers, HF_TASKS[task])
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if isinstance(arch, str) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        cls = transformers.AutoModel
    return cls


def build_hf_from_config(directory: str | os.PathLike[str], task: str | None, kwargs: dict[str, Any]) -> nn.Module:
    """A Hugging Face model built (random init) from ``directory/config.json`` alone: no weights
    and no code are read from the directory. Used by checkpoints, which carry their own weights."""
    transformers = require("transformers", f"hf:{directory}")
    path = Path(directory)
    config = _hf_config(str(directory), path, kwargs)
    cls = _hf_class(transformers, config, task)
    try:
        model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelSourceError(f"hf:{directory}: cannot build {cls.__name__} from config.json ({first})") from None
    model.netxray_hf_dir = str(path.resolve())
    pre = _hf_image_preprocessing(path)
    if pre is not None:
        model.netxray_preprocessing = pre
    return model


def _hf(directory: str, task: str | None, kwargs: dict[str, Any]) -> nn.Module:
    transformers = require("transformers", f"hf:{directory}")
    path = Path(directory).expanduser()
    config = _hf_config(directory, path, kwargs)
    pickled = sorted(p.name for p in path.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    if pickled and not any(path.glob("*.safetensors")):
        raise ModelSourceError(
            f"hf:{directory}: its weights are {pickled[0]}, a pickle (it can run code when read); "
            "netxray reads only .safetensors. Convert it once, in an environment you trust: "
            "model.save_pretrained(DIR, safe_serialization=True)"
        )
    cls = _hf_class(transformers, config, task)
    if "dtype" not in kwargs and "torch_dtype" not in kwargs:
        # the checkpoint's own dtype (bfloat16 stays bfloat16): never a float32 copy of a
        # billion-parameter model; transformers < 4.56 loads float32 unless told, and names the
        # option torch_dtype
        version = tuple(int(p) for p in re.findall(r"\d+", transformers.__version__)[:2])
        kwargs = {**kwargs, ("dtype" if version >= (4, 56) else "torch_dtype"): "auto"}
    try:
        transformers.utils.logging.disable_progress_bar()  # no bar on stderr for a local read
        model = cls.from_pretrained(path, local_files_only=True, trust_remote_code=False,
                                    use_safetensors=True, **kwargs)  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelSourceError(f"hf:{directory}: cannot load the model with {cls.__name__} ({first})") from None
    model.netxray_hf_dir = str(path.resolve())
    model.netxray_weights = str(path.resolve())
    pre = _hf_image_preprocessing(path)
    if pre is not None:
        model.netxray_preprocessing = pre
    return model


def _hf_image_preprocessing(path: Path) -> dict[str, Any] | None:
    """Mean, std and size from ``preprocessor_config.json`` (an image model's), if present."""
    f = path / "preprocessor_config.json"
    if not f.is_file():
        return None
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    size = cfg.get("size") or cfg.get("crop_size")
    if isinstance(size, Mapping):
        size = size.get("height") or size.get("shortest_edge")
    out: dict[str, Any] = {"source": f"hf:{path} preprocessor_config.json"}
    if cfg.get("image_mean") is not None and cfg.get("image_std") is not None:
        out.update(mean=list(cfg["image_mean"]), std=list(cfg["image_std"]))
    if isinstance(size, int):
        out["size"] = size
    return out if len(out) > 1 else None
