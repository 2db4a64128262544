"""How a running model is observed: activation sites, layer probes, reducers, streaming."""

from netxray.capture.core import (
    Capture,
    SiteRecord,
    as_indexable,
    collect,
    forward_batch,
    iter_selected_batches,
    model_device,
    resolve_layers,
    select_indices,
)
from netxray.capture.graph import ModelGraph, record_graph, unwrap_model
from netxray.capture.reducers import Reducer, RowStore, flatten_features, pool_features
from netxray.capture.sites import (
    ACTIVATION_MODULES,
    FUNCTIONAL_ACTIVATIONS,
    functional_op_name,
    is_activation_module,
)

capture_context = Capture

__all__ = [
    "ACTIVATION_MODULES",
    "FUNCTIONAL_ACTIVATIONS",
    "Capture",
    "ModelGraph",
    "Reducer",
    "RowStore",
    "SiteRecord",
    "as_indexable",
    "capture_context",
    "collect",
    "flatten_features",
    "forward_batch",
    "functional_op_name",
    "is_activation_module",
    "iter_selected_batches",
    "model_device",
    "pool_features",
    "record_graph",
    "resolve_layers",
    "select_indices",
    "unwrap_model",
]
