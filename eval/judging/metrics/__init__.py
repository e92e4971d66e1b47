"""The metrics: pure functions for the maths, small classes that accumulate (torchmetrics style).

Public API::

    from eval.judging.metrics import geometry, mesh_quality, image, clip, diversity

    geometry.sample_surface(mesh, n, seed)            -> points, normals
    geometry.chamfer_distance(a, b)                   -> {"chamfer_l1", "chamfer_l2"}
    geometry.f_score(a, b, threshold)                 -> float
    geometry.compare_to_reference(points, normals, reference_mesh, ReferenceSettings())
    geometry.volume_iou(mesh_a, mesh_b)               -> float   (Embree ray parity)
    geometry.icp(source, target)                      -> 4x4, rmse
    geometry.ChamferFScore                            accumulator
    mesh_quality.mesh_quality(vertices, faces)        -> MeshQuality
    mesh_quality.point_quality(points)                -> PointQuality
    mesh_quality.self_intersecting_faces(v, f)        -> bool per face
    image.psnr / image.ssim / image.lpips(model, ...) -> float;  image.ImageQuality accumulator
    image.fit_foreground(rgb, alpha, size)            -> aligned rgb, mask
    lpips_net.load_lpips(paths, net)                  -> LPIPS network with real weights
    lpips_weights.resolve(net, source)                -> the official files, fetched once into the cache
    clip.CLIPScorer.load(checkpoint)                  -> embeddings; clip.clip_score, clip.r_precision,
                                                         clip.image_similarity; CLIPScore, RPrecision
    diversity.asset_embedding(scorer, asset)          -> mean CLIP embedding over the ring views
    diversity.mean_pairwise_chamfer / mean_pairwise_cosine_distance; Diversity accumulator

Modules are imported on use (``from eval.judging.metrics import geometry``): torch loads only with
``image.lpips``, ``lpips_net`` and ``clip``.
"""
