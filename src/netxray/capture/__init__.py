"""How a running model is observed: activation sites, layer probes, reducers, streaming."""

from netxray.capture.core import Capture, SiteRecord, collect, resolve_layers
from netxray.capture.graph import ModelGraph, record_graph, unwrap_model
from netxray.capture.inputs import (
    Samples,
    as_indexable,
    describe,
    example_batch,
    forward_batch,
    iter_selected_batches,
    model_device,
    model_dtype,
    place_model,
    resolve_device,
    resolve_samples,
    select_indices,
)
from netxray.capture.probes import natural_probes
from netxray.capture.reducers import Reducer, RowStore, flatten_features, pool_features
from netxray.capture.sites import (
    ACTIVATION_MODULES,
    FUNCTIONAL_ACTIVATIONS,
    functional_op_name,
    is_activation_module,
)

capture_context = Capture

__all__ = [
    "natural_probes",
    "ACTIVATION_MODULES",
    "FUNCTIONAL_ACTIVATIONS",
    "Capture",
    "ModelGraph",
    "Reducer",
    "RowStore",
    "Samples",
    "SiteRecord",
    "as_indexable",
    "capture_context",
    "collect",
    "describe",
    "example_batch",
    "flatten_features",
    "forward_batch",
    "functional_op_name",
    "is_activation_module",
    "iter_selected_batches",
    "model_device",
    "model_dtype",
    "place_model",
    "pool_features",
    "record_graph",
    "resolve_device",
    "resolve_layers",
    "resolve_samples",
    "select_indices",
    "unwrap_model",
]
