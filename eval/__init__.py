"""Trilemma3D evaluation: everything after a method, in four rooms.

    eval.judging   the protocol, the one renderer and camera ring, the metrics (methods never score themselves)
    eval.runs      the SQLite run store, the runner the app, CLI and study share, the run cache
    eval.ratings   arena votes, Likert ratings, the Bradley-Terry leaderboard, sync, CLI
    eval.study     study files, cells, executors, the report and the thesis chapter

Each room's ``__init__.py`` states its public API. Imports flow one way:
ui -> (study, ratings) -> runs -> judging -> methods, never back.

    python -m eval score ASSET.glb [--prompt TEXT] [--image FILE] [--reference MESH] [--json]
    python -m eval ratings export|leaderboard ...
    python -m eval study check|run|report STUDY.yaml ...

Importing ``eval`` or any room loads no torch: the renderer and the CLIP / LPIPS metrics import it on use.
"""
