"""A model's permutable spaces, read from its recorded graph (:mod:`netxray.capture.graph`).

Which hidden spaces of a model can be permuted (and scaled) without changing its function, found
from the structure of one recorded forward pass: ``_parts`` holds the element-wise kind tables
and :class:`~netxray.capture.structure._parts.Member` (one tensor slice that moves with a
space), ``_spaces`` walks the graph from each space's writers to its readers. The symmetry lens
(:mod:`netxray.lenses.symmetry`) turns these claims into verified axes.
"""
