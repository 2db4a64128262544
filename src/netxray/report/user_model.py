"""A user's own model (``--model path/to/file.py:factory``): kept importable here for existing
code; it lives in :mod:`netxray.models.user_model`, beside the other model sources, so that
``models`` never imports ``report`` (an arrow up the layers)."""

from netxray.models.user_model import (  # noqa: F401  (re-exported: they lived here)
    _NESTED_KEYS,
    WEIGHT_SUFFIXES,
    UserModelError,
    _parse_spec,
    check_state_dict,
    load_factory,
    load_user_model,
    read_weights,
)

__all__ = [
    "UserModelError",
    "check_state_dict",
    "load_factory",
    "load_user_model",
    "read_weights",
]
