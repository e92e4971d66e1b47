"""Judging an asset: the protocol, the one renderer and camera ring, the metrics. Methods never score themselves.

Public API::

    from eval.judging import MetricRow, score, PROTOCOL_VERSION, ProtocolOptions, cost_rows, mesh_stat_rows

    eval.judging.protocol      score(asset, inputs, context) -> metric rows; ProtocolOptions; cost rows
    eval.judging.render        Camera, camera_ring, heldout_camera, front_camera; render, render_modes,
                               render_turntable (the one renderer, torch)
    eval.judging.renders       save_protocol_renders, gallery, save_input, input_files (what the metrics saw)
    eval.judging.metrics       geometry, mesh_quality, image, clip, diversity (the maths; see its docstring)
    eval.judging.metrics_sets  MMD, COV, 1-NNA between sets of shapes
    eval.judging.trilemma      the generative trilemma of the four trained families

Importing this package loads no torch: the renderer and the CLIP / LPIPS metrics import it on use.
Imports reach down to ``methods`` only.
"""

from eval.judging.protocol import PROTOCOL_VERSION, MetricRow, ProtocolOptions, cost_rows, mesh_stat_rows, score

__all__ = ["PROTOCOL_VERSION", "MetricRow", "ProtocolOptions", "cost_rows", "mesh_stat_rows", "score"]
