"""Moved to :mod:`netxray.capture.structure._parts` (how to find permutable spaces lives with the
model's structure, not in a lens); this module re-exports its names."""

from netxray.capture.structure._parts import (  # noqa: F401  (re-exported: they lived here)
    _HOMOGENEOUS_FUNCS,
    _HOMOGENEOUS_MODULES,
    _IDENTITY_FUNCS,
    _IDENTITY_MODULES,
    _METHODS,
    _ODD_FUNCS,
    _ODD_MODULES,
    _OTHER_FUNCS,
    _OTHER_MODULES,
    Member,
    _module_kind,
)
