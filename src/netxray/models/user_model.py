"""A user's own model: ``--model path/to/file.py:factory`` plus ``--weights file.safetensors|.pt``.

The model *file* is the user's own Python code, executed deliberately (imported by path, the way
``python file.py`` would run it) so that any architecture can be scanned. The *weights* are data:
they are read with ``safetensors`` or ``torch.load(weights_only=True)``, which never executes
code from the file, and are checked key by key and shape by shape against the model the factory
built before anything is loaded.

Example
-------
>>> import pathlib, tempfile, textwrap
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "net.py").write_text(textwrap.dedent('''
...     import torch
...     def make():
...         return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
... '''))
>>> model = load_user_model(f"{d}/net.py:make")
>>> type(model).__name__
'Sequential'
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "UserModelError",
    "check_state_dict",
    "load_factory",
    "load_user_model",
    "read_weights",
]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# keys under which training scripts commonly nest the state dict inside a .pt file
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "weights")


class UserModelError(ValueError):
    """The user's model file, factory or weights file cannot be used; the message says how to fix it."""


def _parse_spec(spec: str) -> tuple[Path, str]:
    if not isinstance(spec, str) or ":" not in spec:
        raise UserModelError(
            f"--model {spec!r}: expected PATH.py:FACTORY, e.g. --model my_net.py:make_model "
            "(a Python file and the name of a function in it that returns the nn.Module)"
        )
    # rsplit: the path itself may contain ':' (a Windows drive), the factory name cannot
    path_text, factory = spec.rsplit(":", 1)
    if not factory.isidentifier():
        raise UserModelError(
            f"--model {spec!r}: {factory!r} is not a Python function name; expected PATH.py:FACTORY"
        )
    path = Path(path_text).expanduser()
    if path.suffix != ".py":
        raise UserModelError(
            f"--model {spec!r}: {path_text!r} is not a .py file; expected PATH.py:FACTORY"
        )
    if not path.is_file():
        raise UserModelError(
            f"--model {spec!r}: file {str(path)!r} not found (relative paths are resolved from "
            f"{os.getcwd()})"
        )
    return path.resolve(), factory


def load_factory(spec: str) -> Callable[..., Any]:
    """Import the file of ``spec = "PATH.py:FACTORY"`` by path and return its ``FACTORY``.

    The file runs as a fresh module named after its path hash, so two files both called
    ``model.py`` do not collide, and its own directory is importable while it runs (so it may
    import helper modules that sit next to it).
    """
    path, name = _parse_spec(spec)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    mod_name = f"netxray_user_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise UserModelError(f"--model {spec!r}: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # registered before exec: dataclasses and pickling look the module up in sys.modules
    sys.modules[mod_name] = module
    added = str(path.parent) not in sys.path
    if added:
        sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise UserModelError(
            f"--model {spec!r}: importing {path} failed with {type(exc).__name__}: {exc} "
            "(fix the error in that file; it is run as ordinary Python)"
        ) from exc
    finally:
        if added:
            try:
                sys.path.remove(str(path.parent))
            except ValueError:
                pass
    factory = getattr(module, name, None)
    if factory is None:
        available = sorted(
            k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
            and getattr(v, "__module__", None) == mod_name
        )
        raise UserModelError(
            f"--model {spec!r}: {path.name} defines no {name!r}; functions and classes defined "
            f"there: {available or 'none'}"
        )
    if not callable(factory):
        raise UserModelError(
            f"--model {spec!r}: {name!r} in {path.name} is a {type(factory).__name__}, not a "
            "function; expected a function (or class) that returns the nn.Module"
        )
    return factory


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pt/.pth/.bin`` without executing code.

    ``.pt`` files are read with ``torch.load(weights_only=True)`` (tensors and plain containers
    only; a pickled module or custom class is refused). A state dict nested under
    ``state_dict`` / ``model_state_dict`` / ``model`` / ``weights`` (a training checkpoint) is
    unwrapped.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserModelError(f"--weights {str(path)!r}: file not found")
    suffix = p.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise UserModelError(
            f"--weights {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(WEIGHT_SUFFIXES)} (save with safetensors.torch.save_file(model.state_dict(), "
            "'w.safetensors') or torch.save(model.state_dict(), 'w.pt'))"
        )
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserModelError(f"--weights {str(path)!r}: not a valid safetensors file ({exc})") from exc
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for code, RuntimeError for a corrupt archive
            raise UserModelError(
                f"--weights {str(path)!r}: cannot be read safely with torch.load(weights_only=True) "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); it must hold "
                "a state dict of tensors — save it with torch.save(model.state_dict(), path), not "
                "torch.save(model, path), or convert it to .safetensors"
            ) from exc
    if isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        for key in _NESTED_KEYS:
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise UserModelError(
            f"--weights {str(path)!r}: holds a {type(state).__name__}, expected a state dict "
            "(a mapping from parameter names to tensors)"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserModelError(
            f"--weights {str(path)!r}: entries {bad[:5]} are not tensors; expected a state dict of "
            "tensors (model.state_dict())"
        )
    return dict(state)


def check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "weights"
) -> None:
    """Raise :class:`UserModelError` unless ``state`` has exactly ``model``'s keys and shapes.

    The message lists the missing and unexpected keys and every shape mismatch, and hints at
    the usual cause (a ``module.`` prefix left by DataParallel, the wrong factory arguments).
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    if not (missing or unexpected or shapes):
        return

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:10]) + (f", … ({len(keys)} in all)" if len(keys) > 10 else "")

    lines = [f"{source} do not fit the model built by the factory ({type(model).__name__}):"]
    if missing:
        lines.append(f"  missing keys (in the model, not in the file): {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys (in the file, not in the model): {show(unexpected)}")
    for k in shapes[:10]:
        lines.append(f"  {k}: shape {list(got[k])} in the file, {list(expected[k])} in the model")
    if unexpected and all(k.startswith("module.") for k in got):
        lines.append("  hint: the keys start with 'module.' (saved from DataParallel); save "
                     "model.module.state_dict() instead")
    else:
        lines.append("  hint: the file must be saved from the same architecture the factory "
                     "builds (same layer names and sizes)")
    raise UserModelError("\n".join(lines))


def load_user_model(
    spec: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    factory_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build the user's model from ``spec = "PATH.py:FACTORY"``, load ``weights``, return it in eval mode.

    ``FACTORY(**factory_kwargs)`` must return an ``nn.Module``. Weights are loaded only after
    a strict key/shape check (:func:`check_state_dict`); without ``weights`` the factory's own
    initialisation is kept (``model.netxray_weights`` then says so).
    """
    factory = load_factory(spec)
    try:
        model = factory(**dict(factory_kwargs or {}))
    except Exception as exc:
        raise UserModelError(
            f"--model {spec!r}: calling the factory failed with {type(exc).__name__}: {exc} "
            "(it is called with no arguments and must return an nn.Module)"
        ) from exc
    if not isinstance(model, nn.Module):
        raise UserModelError(
            f"--model {spec!r}: the factory returned a {type(model).__name__}, expected a "
            "torch.nn.Module"
        )
    if weights is not None:
        state = read_weights(weights)
        check_state_dict(model, state, source=f"--weights {str(weights)!r}")
        with torch.no_grad():
            model.load_state_dict(state, strict=True)
        model.netxray_weights = str(Path(weights).expanduser().resolve())
    else:
        model.netxray_weights = None
    model.netxray_source = spec
    return model.eval()
