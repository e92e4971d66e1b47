"""Trilemma3D evaluation: everything that judges an asset, and the run store.

Public API::

    from eval import MetricRow, score, Store, RunRecord
"""

from eval.protocol import PROTOCOL_VERSION, MetricRow, score

__all__ = ["PROTOCOL_VERSION", "MetricRow", "score"]
