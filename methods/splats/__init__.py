"""3D Gaussian splatting (Kerbl et al. 2023): the rasteriser, the training loop and the run.

Public API: :mod:`methods.splats.sh` (spherical harmonics, no torch), and, importing torch,
:func:`methods.splats.raster.rasterize` (the differentiable pure-PyTorch renderer),
:class:`methods.splats.train.SplatFitter` and :func:`methods.splats.pipeline.run_splats` (with
:class:`~methods.splats.pipeline.SplatRun`, its part of the shared run side :mod:`methods.nerf.scene_run`).
This file imports nothing heavy so that the asset code can use the SH helpers.
"""
