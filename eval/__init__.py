"""Trilemma3D evaluation: everything that judges an asset, and the run store.

Public API::

    from eval import MetricRow, score, Store, RunRecord
    from eval import PROTOCOL_VERSION, ProtocolOptions, cost_rows, mesh_stat_rows

    from eval.render import Camera, camera_ring, heldout_camera, front_camera    # the fixed cameras
    from eval.render import render, render_modes, render_turntable             # the one renderer (torch)
    from eval.metrics import geometry, mesh_quality, image, clip, diversity    # the maths (see its docstring)
    from eval.renders import save_protocol_renders, gallery, save_input, input_files  # what the metrics saw

    python -m eval score ASSET.glb [--prompt TEXT] [--image FILE] [--reference MESH] [--json]

Importing ``eval`` loads no torch: the renderer and the CLIP / LPIPS metrics import it on use.
"""

from eval.protocol import PROTOCOL_VERSION, MetricRow, ProtocolOptions, cost_rows, mesh_stat_rows, score

__all__ = ["PROTOCOL_VERSION", "MetricRow", "ProtocolOptions", "cost_rows", "mesh_stat_rows", "score"]
