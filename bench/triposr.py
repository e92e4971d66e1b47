"""Benchmark: TripoSR per stage on real-size random weights (not a test).

Builds the released configuration (``tests/tiny_triposr.REAL_CONFIG_YAML``: DINO ViT-B/16 at 512 px, 16-layer
1024-wide backbone, 64 x 64 x 40 triplanes; 419,275,628 parameters) with random weights in memory, shifts the
density output so that a surface exists (as the tiny test checkpoints do), and times one image through our
stages at each marching-cubes resolution:

    preprocess (cut-out, foreground ratio, grey) | encode (ViT + backbone + upsampler, one forward pass)
    decode_grid (density on res^3 points, chunked) | marching_cubes (scikit-image) | vertex_colors | export (.glb)

and the peak resident memory (and peak CUDA memory on a GPU). With ``--official DIR`` (a checkout of
VAST-AI-Research/TripoSR kept outside this repository; it needs ``omegaconf`` and ``einops``) the official
code is timed in the same run on the same image, with the torchmcubes -> scikit-image stand-in of the parity
fixtures (``--official-shims``): its forward pass, its density grid, and the rest of its ``extract_mesh``
(marching cubes, vertex colours, trimesh). Its weights are its own random initialisation, with the
decoder, backbone and upsampler copied from ours (the ViT keys differ between transformers releases):
the cost of encode and grid does not depend on the values; marching cubes and colours depend on the
surface, so their vertex counts are printed beside the seconds.

Usage::

    python bench/triposr.py                       # CPU, float32, resolutions 128 and 256
    python bench/triposr.py --device cuda         # float16 network, float32 decoder
    python bench/triposr.py --resolutions 128 --threads 2
    python bench/triposr.py --resolutions 128 --official /tmp/TripoSR   # and the official code, same run
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_IMAGE = 768  # px, the side of the RGBA test image (cut out and padded, then resized to 512)
STAGES = ("preprocess", "encode", "decode_grid", "marching_cubes", "vertex_colors", "export")


def build_model(device: str, dtype, seed: int = 0):
    import numpy as np
    import torch

    from methods.triposr import mesh, preprocess
    from methods.triposr.config import DINO_VITB16_CONFIG, parse_config
    from methods.triposr.model import TripoSR
    from tests.tiny_triposr import REAL_CONFIG_YAML, reference_image

    config = parse_config(REAL_CONFIG_YAML, DINO_VITB16_CONFIG)
    torch.manual_seed(seed)
    model = TripoSR(config).eval()
    with torch.no_grad():
        # PyTorch's default Linear init flattens the 10-layer SiLU decoder to a constant density (std ~1e-6);
        # draw it as the parity fixtures do (N / sqrt(fan_in), biases 0.1 N) so the density varies in space
        for layer in model.decoder.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.5 / math.sqrt(layer.in_features))
                layer.bias.normal_(0.0, 0.1)
        prepared, _ = preprocess.prepare(reference_image(BENCH_IMAGE))
        pixels = torch.from_numpy(np.asarray(prepared, dtype=np.float32) / 255.0)[None]
        planes = model(pixels)[0]
        last = model.decoder.layers[-1]
        raw = torch.log(torch.from_numpy(mesh.density_grid(model, planes, 32)).flatten()) - config.density_bias
        last.weight[0] *= 2.0 / max(float(raw.std()), 1e-6)
        raw = torch.log(torch.from_numpy(mesh.density_grid(model, planes, 32)).flatten()) - config.density_bias
        last.bias[0] += math.log(25.0) - config.density_bias - float(raw.quantile(0.8))
    model.to(device=device, dtype=dtype)
    model.decoder.float()
    return model


def time_one(model, resolution: int, chunk_size: int, device: str, dtype) -> dict:
    import torch

    from methods import export, runtime
    from methods.base import Asset, Mesh, normalize
    from methods.triposr import mesh, preprocess
    from methods.triposr.pipeline import scene_codes
    from tests.tiny_triposr import reference_image

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    seconds: dict[str, float] = {}
    image = reference_image(BENCH_IMAGE)
    with runtime.PeakMemory() as peak:
        start = time.perf_counter()
        prepared, _ = preprocess.prepare(image)
        seconds["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        planes = scene_codes(model, prepared, device, dtype)[0]
        sync()
        seconds["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        grid = mesh.density_grid(model, planes, resolution, chunk_size)
        sync()
        seconds["decode_grid"] = time.perf_counter() - start
        start = time.perf_counter()
        verts, faces = mesh.marching_cubes(grid, model.config.radius)
        seconds["marching_cubes"] = time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            colors = model.query(planes, torch.from_numpy(verts).to(device), chunk_size)["color"].cpu().numpy()
        sync()
        seconds["vertex_colors"] = time.perf_counter() - start
        start = time.perf_counter()
        asset = Asset(mesh=Mesh(mesh.official_to_canonical(verts), faces, vertex_colors=colors), up="+Y")
        with tempfile.TemporaryDirectory() as out:
            export.export_asset(normalize(asset), Path(out), {"method": "triposr"})
        seconds["export"] = time.perf_counter() - start
    return {
        "seconds": seconds,
        "total": sum(seconds.values()),
        "vertices": len(verts),
        "faces": len(faces),
        "peak_rss_mb": peak.peak_rss_mb,
        "peak_gpu_mb": peak.peak_gpu_mb,
    }


def serve_vit_config() -> None:
    """The official tokenizer fetches facebook/dino-vitb16's config.json: serve it from a throw-away local
    cache, offline. Before anything imports huggingface_hub (it reads these variables once)."""
    import json
    import os

    from methods.triposr.config import DINO_VITB16_CONFIG  # light: no torch

    hub = Path(tempfile.mkdtemp(prefix="tsr_hf_")) / "hub"
    repo = hub / "models--facebook--dino-vitb16"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text(json.dumps(DINO_VITB16_CONFIG))
    os.environ["HF_HUB_CACHE"] = str(hub)
    os.environ["HF_HUB_OFFLINE"] = "1"


def official_model(src: Path, shims: Path, ours):
    """The official TSR built from the released config (its ViT config served by :func:`serve_vit_config`)."""
    from tests.tiny_triposr import REAL_CONFIG_YAML

    sys.path.insert(0, str(shims))
    sys.path.insert(1, str(src))
    from omegaconf import OmegaConf
    from tsr.system import TSR

    config = OmegaConf.create(REAL_CONFIG_YAML)
    OmegaConf.resolve(config)
    model = TSR(config).eval()
    theirs = model.state_dict()
    shared = {k: v for k, v in ours.state_dict().items() if k in theirs and theirs[k].shape == v.shape}
    shared = {k: v for k, v in shared.items() if not k.startswith("image_tokenizer.")}
    model.load_state_dict(shared, strict=False)
    return model.float()


def time_official(model, resolution: int, chunk_size: int) -> dict:
    import torch

    from methods.triposr import preprocess
    from tests.tiny_triposr import reference_image

    prepared, _ = preprocess.prepare(reference_image(BENCH_IMAGE))
    seconds: dict[str, float] = {}
    model.renderer.set_chunk_size(chunk_size)
    with torch.no_grad():
        start = time.perf_counter()
        codes = model([prepared], "cpu")
        seconds["encode"] = time.perf_counter() - start
        model.set_marching_cubes_resolution(resolution)
        start = time.perf_counter()
        model.renderer.query_triplane(model.decoder, model.isosurface_helper.grid_vertices, codes[0])
        seconds["decode_grid"] = time.perf_counter() - start
        start = time.perf_counter()
        meshes = model.extract_mesh(codes, True, resolution=resolution)
        seconds["extract_mesh"] = time.perf_counter() - start  # grid again + marching cubes + colours + trimesh
    return {"seconds": seconds, "vertices": len(meshes[0].vertices)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--warmup", action="store_true", help="run once untimed first (GPU kernels, allocator)")
    parser.add_argument("--official", type=Path, help="a checkout of the official code to time in the same run")
    parser.add_argument(
        "--official-shims", type=Path, default=ROOT.parent / "shared" / "fixtures" / "triposr" / "shims"
    )
    args = parser.parse_args()
    if args.official is not None:
        serve_vit_config()

    import torch

    from methods import runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = runtime.dtype(args.device)
    start = time.perf_counter()
    model = build_model(args.device, dtype)
    build = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"TripoSR real size: {params:,} parameters, built in {build:.1f} s on {args.device} ({dtype})")
    print(f"torch threads {torch.get_num_threads()}, hardware {runtime.hardware().get('gpu', 'cpu')}")
    if args.warmup:
        time_one(model, min(args.resolutions), args.chunk_size, args.device, dtype)
    header = f"{'res':>5} " + " ".join(f"{s:>15}" for s in STAGES) + f" {'total':>8} {'V':>8} {'peak RSS MB':>12}"
    print(header)
    results: dict[int, dict] = {}
    for res in args.resolutions:
        r = time_one(model, res, args.chunk_size, args.device, dtype)
        cells = " ".join(f"{r['seconds'][s]:>15.3f}" for s in STAGES)
        gpu = f"  peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] is not None else ""
        print(f"{res:>5} {cells} {r['total']:>8.2f} {r['vertices']:>8} {r['peak_rss_mb']:>12.0f}{gpu}")
        results[res] = r
    if args.official is None:
        return
    official = official_model(args.official, args.official_shims, model)
    if args.warmup:
        time_official(official, min(args.resolutions), args.chunk_size)
    print("\nofficial code, same run (CPU, float32); ratio = ours / official (<= 1.0: ours is as fast or faster)")
    print(f"{'res':>5} {'stage':>22} {'official s':>11} {'ours s':>9} {'ratio':>7}")
    for res in args.resolutions:
        o, r = time_official(official, res, args.chunk_size), results[res]["seconds"]
        mesh_rest = r["decode_grid"] + r["marching_cubes"] + r["vertex_colors"]
        pairs = [
            ("encode", o["seconds"]["encode"], r["encode"]),
            ("decode_grid", o["seconds"]["decode_grid"], r["decode_grid"]),
            ("grid+mc+colours", o["seconds"]["extract_mesh"], mesh_rest),
        ]
        for name, theirs, ours in pairs:
            print(f"{res:>5} {name:>22} {theirs:>11.2f} {ours:>9.2f} {ours / theirs:>7.2f}")
        print(f"{res:>5} {'vertices':>22} {o['vertices']:>11} {results[res]['vertices']:>9}")


if __name__ == "__main__":
    main()
