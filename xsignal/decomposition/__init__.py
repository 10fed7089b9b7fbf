"""Decompositions streamed over blocks: SVD, PCA, ORPCA, ORNMF.

``xsignal.decomposition(da, ...)`` (also ``da.signal.decomposition``)
returns an :class:`xsignal.Decomposition`. Modules: ``core`` (validation
and dispatch), ``streaming`` (passes over blocks), ``poisson`` (noise
scaling), ``result`` (the result object), one module per algorithm.
"""

from .core import decomposition
from .result import Decomposition

__all__ = ["Decomposition", "decomposition"]
