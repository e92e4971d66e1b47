"""Benchmark: TripoSR per stage on real-size random weights (not a test).

Builds the released configuration (``tests/tiny_triposr.REAL_CONFIG_YAML``: DINO ViT-B/16 at 512 px, 16-layer
1024-wide backbone, 64 x 64 x 40 triplanes; 419,275,628 parameters) with random weights in memory, shifts the
density output so that a surface exists (as the tiny test checkpoints do), and times one image through our
stages at each marching-cubes resolution:

    preprocess (cut-out, foreground ratio, grey) | encode (ViT + backbone + upsampler, one forward pass)
    decode_grid (density on res^3 points, chunked) | marching_cubes (scikit-image) | vertex_colors | export (.glb)

and the peak resident memory (and peak CUDA memory on a GPU). The official code is not timed here (it would
need a checkout kept outside the repository and the torchmcubes -> scikit-image change); the issue quotes
its CPU numbers for scale (about 22 s forward pass at 512 px, 2.4 s for the 128^3 grid).

Usage::

    python bench/triposr.py                       # CPU, float32, resolutions 128 and 256
    python bench/triposr.py --device cuda         # float16 network, float32 decoder
    python bench/triposr.py --resolutions 128 --threads 2
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--warmup", action="store_true", help="run once untimed first (GPU kernels, allocator)")
    args = parser.parse_args()

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
    for res in args.resolutions:
        r = time_one(model, res, args.chunk_size, args.device, dtype)
        cells = " ".join(f"{r['seconds'][s]:>15.3f}" for s in STAGES)
        gpu = f"  peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] is not None else ""
        print(f"{res:>5} {cells} {r['total']:>8.2f} {r['vertices']:>8} {r['peak_rss_mb']:>12.0f}{gpu}")


if __name__ == "__main__":
    main()
