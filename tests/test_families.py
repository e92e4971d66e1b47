"""The four trained families (vae, gan, ddpm, score-sde): data, training, samplers, shipped weights, CLI, Text tab.

Tiny random-weight networks for the unit tests; the shipped weights (assets/weights/) for the behaviour
tests. Everything runs on a CPU with one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh

import methods
import methods.families  # noqa: F401 (registers the four methods)
from methods.base import Inputs, InvalidInput
from methods.families import data, diffusion, models, sde, text
from methods.families.nets import NetConfig, UNet3D, multi_hot
from methods.families.sample import grid_to_asset, weights_path
from methods.families.train import Trainer, caption_tokens
from tests.generators import drive
from tests.processes import python_c

ROOT = Path(__file__).resolve().parents[1]
TINY = NetConfig(channels=(4, 8, 8), cond_dim=16, word_dim=8, latent_dim=8, groups=4)
METHOD_IDS = ("vae", "gan", "ddpm", "score-sde")
FAST = {"ddpm": {"steps": 5}, "score-sde": {"steps": 5}}  # for the plumbing tests; behaviour uses defaults

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- data


def test_data_is_deterministic_and_split_by_caption():
    spec = data.spec_for_caption("a tall blue lamp", 3)
    assert spec == data.spec_for_caption("a tall blue lamp", 3) and spec != data.spec_for_caption("a tall blue lamp", 4)
    a, b = data.make_sample(spec, mesh_resolution=40), data.make_sample(spec, mesh_resolution=40)
    for name in ("occupancy", "colors", "vertices", "faces", "points", "point_colors"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.occupancy.shape == (32, 32, 32) and a.colors.shape == (3, 32, 32, 32) and a.points.shape == (2048, 3)
    assert a.occupancy.min() >= 0 and a.occupancy.max() == 1 and 0 < a.occupancy.mean() < 0.5
    train, held = data.split_captions()
    assert len(train) + len(held) == len(data.all_captions()) == 720 and not set(train) & set(held)
    train_words = {w for c in train for w in c.split()}
    assert {w for c in held for w in c.split()} <= train_words  # held-out captions: new combinations only
    assert "a red cube" in train and "a blue sphere" in train
    assert len(text.CATEGORIES) >= 12


def test_the_caption_sets_of_the_bench_keep_the_held_out_captions_apart():
    from eval.judging import trilemma

    train, held = data.split_captions()
    control, plain = trilemma.heldout_captions("train"), trilemma.heldout_captions("plain")
    assert set(control) <= set(train) and set(plain) <= set(held) and not set(control) & set(held)
    categories = [data.parse_caption(c)[0] for c in control]
    assert sorted(categories) == sorted(text.CATEGORIES) == sorted(data.parse_caption(c)[0] for c in plain)
    with pytest.raises(ValueError, match="train"):
        trilemma.heldout_captions("test")


@pytest.mark.parametrize("category", text.CATEGORIES)
def test_reference_mesh_is_watertight(category):
    spec = data.spec_for_caption(f"a red {category}", 0)
    v, f, c = data.reference_mesh(spec, resolution=48)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert np.abs(v).max() < 1.0 and c.shape == v.shape
    assert np.allclose(c.mean(0), text.COLOURS["red"], atol=0.2)


def test_tokeniser_names_unknown_words_and_refuses_empty_vocabulary():
    tokens = text.tokenize("A big GRAY donut made of glass")
    assert tokens.words == ("large", "grey", "torus") and tokens.unknown == ("made", "glass")
    assert "'glass'" in tokens.note()
    with pytest.raises(InvalidInput, match="no word of .* is in the vocabulary"):
        text.tokenize_or_refuse("an elephant on the moon")


# ----------------------------------------------------------------------------- training


def _fixed_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    captions = ["a red cube", "a blue sphere", "a small green mug", "a tall yellow lamp"] * (n // 4)
    grids = []
    for i, c in enumerate(captions):
        occ, col = data.voxelize(data.spec_for_caption(c, i))
        grids.append(data.pool_grid(np.concatenate([occ[None], col]), 2))
    return torch.from_numpy(np.stack(grids)).float(), multi_hot(caption_tokens(captions))


@pytest.mark.parametrize("family", models.FAMILIES)
def test_a_few_training_steps_reduce_the_loss_on_a_fixed_batch(family):
    x, c = _fixed_batch()
    trainer = Trainer(family, TINY, {"lr": 3e-3, "lr_d": 3e-3, "batch": 8, "ema": 0.9}, seed=0)
    before = trainer.fixed_loss(x, c)
    for _ in range(12):
        trainer.step(x, c)
    after = trainer.fixed_loss(x, c)
    assert np.isfinite(before) and after < before, (family, before, after)
    exported = trainer.export()
    assert exported.family == family and exported.config == TINY


def test_training_cli_writes_weights_and_record_and_resumes(tmp_path: Path):
    args = [sys.executable, "-m", "methods.families.train", "--family", "ddpm", "--per-caption", "1"]
    args += ["--limit-captions", "8", "--channels", "4", "8", "8", "--cond-dim", "16", "--word-dim", "8"]
    args += ["--out", str(tmp_path / "w"), "--work", str(tmp_path / "work"), "--log-every", "1", "--coords"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*args, "--steps", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(
        [*args, "--steps", "3", "--resume", "--lr", "5e-4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed ddpm at step 2" in second.stderr and "train ddpm" in second.stderr  # the progress bar
    record = json.loads((tmp_path / "w" / "ddpm.json").read_text())
    assert record["training"]["steps"] == 3 and record["training"]["resumed"] and len(record["history"]) == 3
    segments = record["training"]["segments"]  # each run's steps and learning rate (--lr anneals on resume)
    assert [(g["from_step"], g["to_step"], g["lr"]) for g in segments] == [(0, 2, 2e-3), (2, 3, 5e-4)]
    assert record["training"]["lr"] == 5e-4
    assert record["parameters"]["sampling"] > 0 and record["weights_bytes"] > 0
    loaded = models.load(tmp_path / "w" / "ddpm.safetensors")
    assert loaded.family == "ddpm" and loaded.config.channels == (4, 8, 8) and loaded.config.coords
    assert loaded.net.stem.in_channels == 7  # occupancy, RGB and the voxel's x, y, z


def test_training_cli_keeps_the_sde_prediction_across_resumes_and_refuses_mixing_it(tmp_path: Path):
    args = [sys.executable, "-m", "methods.families.train", "--per-caption", "1", "--limit-captions", "8"]
    args += ["--channels", "4", "8", "8", "--cond-dim", "16", "--word-dim", "8", "--log-every", "1"]
    args += ["--out", str(tmp_path / "w"), "--work", str(tmp_path / "work")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    refused = cli("--family", "ddpm", "--prediction", "v", "--steps", "1")
    assert refused.returncode == 2 and "DDPM predicts eps" in refused.stderr
    refused = cli("--family", "sde", "--prediction", "v", "--x0-floor", "0.05", "--steps", "1")
    assert refused.returncode == 2 and "1 + SNR" in refused.stderr
    first = cli("--family", "sde", "--prediction", "v", "--steps", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = cli("--family", "sde", "--steps", "3", "--resume")  # no --prediction: the checkpoint's
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((tmp_path / "w" / "sde.json").read_text())
    assert record["hparams"]["prediction"] == "v"
    assert [g["prediction"] for g in record["training"]["segments"]] == ["v", "v"]
    assert models.load(tmp_path / "w" / "sde.safetensors").hparams["prediction"] == "v"
    mixed = cli("--family", "sde", "--steps", "4", "--resume", "--prediction", "eps")
    assert mixed.returncode != 0 and "predicts v, not eps" in mixed.stderr
    assert json.loads((tmp_path / "w" / "sde.json").read_text())["training"]["steps"] == 3  # nothing overwritten


# ----------------------------------------------------------------------------- samplers


def _settings(**kw) -> SimpleNamespace:
    base = {"seed": 0, "temperature": 1.0, "truncation": 0.0, "guidance": 2.0, "eta": 0.0, "snr": 0.16}
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, models.FamilyModel]:
    torch.manual_seed(0)
    out = {}
    for fam in models.FAMILIES:
        net = models.sampling_net(fam, TINY).eval()
        if isinstance(net, UNet3D):  # the output conv starts at zero; make the samplers see a real network
            torch.nn.init.normal_(net.out_head.out.weight, std=0.05)
        noise = diffusion.StructuredNoise(1.0, 0.5)  # as the shipped diffusion models
        out[fam] = models.FamilyModel(fam, net, TINY, models.default_hparams(fam, noise=noise))
    v_hparams = models.default_hparams("sde", noise=noise, prediction="v")  # the same network read as a v-predictor
    out["sde-v"] = models.FamilyModel("sde", out["sde"].net, TINY, v_hparams)
    return out


SAMPLER_CASES = [
    ("vae", {}),
    ("gan", {"truncation": 1.0}),
    ("ddpm", {"sampler": "ddim", "steps": 4}),
    ("ddpm", {"sampler": "ddpm", "steps": 4}),
    ("sde", {"sampler": "pc", "steps": 3}),
    ("sde", {"sampler": "ode", "steps": 3}),
    ("sde-v", {"sampler": "pc", "steps": 3}),
    ("sde-v", {"sampler": "ode", "steps": 3}),
]


@pytest.mark.parametrize(("family", "kw"), SAMPLER_CASES)
def test_samplers_shapes_range_and_determinism(tiny_models, family, kw):
    model = tiny_models[family]
    ids = [text.tokenize("a red cube").ids, text.tokenize("a blue sphere").ids]
    steps: list[tuple[int, int]] = []
    a = models.sample_grids(model, ids, _settings(seed=1, **kw), callback=lambda i, n: steps.append((i, n)))
    b = models.sample_grids(model, ids, _settings(seed=1, **kw))
    c = models.sample_grids(model, ids, _settings(seed=2, **kw))
    assert a.shape == (2, 4, 16, 16, 16) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert steps and steps[-1][0] + 1 == steps[-1][1]


@pytest.mark.parametrize(
    ("family", "kw"), [("ddpm", {"sampler": "ddim", "steps": 3}), ("sde", {"sampler": "pc", "steps": 3})]
)
def test_the_models_standardisation_and_noise_reach_its_sampler(tiny_models, family, kw):
    """A diffusion model samples with the statistics and the noise it was trained with (kept in its hparams)."""
    tiny = tiny_models[family]
    norm = diffusion.Standardizer([-0.8, 0.1, -0.1, -0.1], [0.55, 0.7, 0.55, 0.65])
    model = models.FamilyModel(family, tiny.net, TINY, {**tiny.hparams, "norm": norm.to_dict()})
    counts = multi_hot([text.tokenize("a red cube").ids])
    got = models.sample_grids(model, [text.tokenize("a red cube").ids], _settings(seed=3, **kw))

    def direct(**extra) -> np.ndarray:
        g = torch.Generator().manual_seed(3)
        common = {"guidance": 2.0, "generator": g, **kw, **extra}
        if family == "ddpm":
            gen = diffusion.iter_sample(model.net, model.schedule(), counts, eta=0.0, **common)
        else:
            gen = sde.iter_sample(model.net, model.vpsde(), counts, snr=0.16, **common)
        return diffusion.run_sampler(gen).numpy()

    np.testing.assert_array_equal(got, direct(norm=model.standardizer(), noise=model.noise()))
    assert not np.allclose(got, direct())  # the identity scaling and white noise give another grid


def test_ddim_with_eta_zero_is_deterministic_given_the_start_noise(tiny_models):
    model = tiny_models["ddpm"]
    counts = multi_hot([text.tokenize("a red cube").ids])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    common = {"guidance": 2.0, "steps": 4}
    ddim = diffusion.run_sampler(diffusion.iter_sample(model.net, model.schedule(), counts, generator=g1, **common))
    again = diffusion.run_sampler(diffusion.iter_sample(model.net, model.schedule(), counts, generator=g2, **common))
    assert torch.equal(ddim, again)
    assert diffusion.timesteps(1000, 4) == [999, 666, 333, 0] and len(diffusion.timesteps(1000, 1000)) == 1000


def test_structured_noise_has_unit_variance_and_a_shared_offset():
    noise = diffusion.StructuredNoise(offset=1.0, coarse=0.5)
    z = noise.sample((256, 4, 16, 16, 16), torch.Generator().manual_seed(0), "cpu")
    assert abs(float(z.var()) - 1.0) < 0.05
    per_shape_mean = z.mean(dim=(2, 3, 4))  # white noise alone would give a variance of 1/4096
    assert 0.3 < float(per_shape_mean.var()) < 0.6
    white = diffusion.StructuredNoise().sample((2, 4, 8, 8, 8), torch.Generator().manual_seed(0), "cpu")
    assert torch.equal(white, torch.randn((2, 4, 8, 8, 8), generator=torch.Generator().manual_seed(0)))


def test_loss_weights_cap_the_clean_end_and_floor_the_noisy_end_in_x0_terms():
    snr = torch.tensor([100.0, 5.0, 1.0, 0.05, 0.01, 1e-4])
    assert torch.equal(diffusion.min_snr_weight(snr, None), torch.ones(6))
    plain = diffusion.min_snr_weight(snr, 5.0)  # min-SNR-5: eps weight min(SNR, 5) / SNR
    torch.testing.assert_close(plain, torch.tensor([0.05, 1.0, 1.0, 1.0, 1.0, 1.0]))
    floored = diffusion.min_snr_weight(snr, 5.0, x0_floor=0.05, cap=4.0)
    torch.testing.assert_close(floored, torch.tensor([0.05, 1.0, 1.0, 1.0, 4.0, 4.0]))
    x0_weight = floored * snr  # what an x0 error costs: never below the floor until the cap
    assert float(x0_weight[3]) == pytest.approx(0.05) and float(x0_weight[4]) == pytest.approx(0.04)


def test_v_prediction_is_the_same_score_and_its_loss_weighs_x0_errors_by_one_plus_snr():
    """eps = sigma x + alpha v and x0 = alpha x - sigma v; the v-MSE is the x0-MSE times 1 + SNR."""
    vp = sde.VPSDE()
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(1, 4, 8, 8, 8, generator=g), torch.randn(1, 4, 8, 8, 8, generator=g)
    for t in (0.05, 0.5, 0.7, 0.95):
        alpha, sigma = vp.marginal(torch.tensor(t))
        x = alpha * x0 + sigma * z
        v = alpha * z - sigma * x0
        torch.testing.assert_close(sigma * x + alpha * v, z)  # what model_eps turns v into
        torch.testing.assert_close(alpha * x - sigma * v, x0)
        wrong = v + 0.1 * torch.randn(v.shape, generator=g)  # a v error of 0.1 ...
        x0_err = float(((alpha * x - sigma * wrong - x0) ** 2).mean())
        v_err = float(((wrong - v) ** 2).mean())
        assert v_err == pytest.approx(x0_err * (1 + float(alpha**2 / sigma**2)), rel=1e-4)  # ... costs (1 + SNR) x0
    with pytest.raises(ValueError, match="1 \\+ SNR"):
        grids, counts = torch.rand(2, 4, 16, 16, 16), torch.zeros(2, 28)
        sde.sde_loss(UNet3D(TINY), vp, grids, counts, g, prediction="v", x0_floor=0.05)
    with pytest.raises(ValueError, match="prediction"):
        Trainer("ddpm", TINY, {"lr": 1e-3, "batch": 2, "prediction": "v"})


def test_the_v_models_sampler_converts_its_output_to_the_noise():
    """A network whose v output is exact for a known x0 leads both samplers to that x0."""

    class KnowsX0(torch.nn.Module):
        def __init__(self, x0):
            super().__init__()
            self.x0, self.cfg = x0, TINY

        def condition(self, counts):
            return counts

        def forward(self, x, t999, cond):
            alpha, sigma = sde.VPSDE().marginal(t999.double() / 999.0)
            alpha, sigma = (v.float().view(-1, 1, 1, 1, 1) for v in (alpha, sigma))
            z = (x - alpha * self.x0) / sigma
            return alpha * z - sigma * self.x0

    target = torch.rand(1, 4, 16, 16, 16)
    norm = diffusion.Standardizer()
    net = KnowsX0(norm.encode(target))
    for sampler in sde.SAMPLERS:
        gen = sde.iter_sample(net, sde.VPSDE(), torch.ones(1, 28), sampler=sampler, steps=20, guidance=1.0,
                              generator=torch.Generator().manual_seed(0), prediction="v")  # fmt: skip
        out = diffusion.run_sampler(gen)
        assert float((out - target).abs().max()) < 1e-3, sampler


def test_vp_sde_marginals_match_the_ddpm_schedule():
    schedule, vp = diffusion.NoiseSchedule(), sde.VPSDE()
    for i in (0, 250, 999):
        alpha, _ = vp.marginal(torch.tensor((i + 1) / 1000.0, dtype=torch.float64))
        assert abs(float(alpha**2) - float(schedule.alpha_bar[i])) < 2e-3


def test_grid_to_asset_meshes_a_coloured_closed_surface():
    occ, col = data.voxelize(data.spec_for_caption("a green cube", 0))
    asset = grid_to_asset(data.pool_grid(np.concatenate([occ[None], col]), 2), seed=0)
    mesh = trimesh.Trimesh(asset.mesh.vertices, asset.mesh.faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0 and asset.up == "+Y" and len(asset.points.points) == 2048
    assert np.allclose(asset.mesh.vertex_colors.mean(0), text.COLOURS["green"], atol=0.05)
    empty = grid_to_asset(np.zeros((4, 16, 16, 16), np.float32) + np.linspace(0, 0.1, 16)[None, :, None, None])
    assert "never crossed" in empty.notes[0]


# ----------------------------------------------------------------------------- the shipped weights


def _missing_weights() -> list[str]:
    return [m for m in METHOD_IDS if not weights_path(m).is_file()]


needs_weights = pytest.mark.skipif(bool(_missing_weights()), reason=f"weights not trained: {_missing_weights()}")


def _run(method_id: str, prompt: str, **overrides):
    return drive(methods.run(method_id, Inputs.text(prompt), overrides or None))[1]


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


@pytest.fixture(scope="module")
def cube_and_sphere():
    return {c: data.reference_samples(c, 1, mesh_resolution=64)[0] for c in ("a red cube", "a blue sphere")}


SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def shipped_samples() -> dict[tuple[str, str], list]:
    """Each family's assets for "a red cube" and "a blue sphere", seeds 0-3, through methods.run (default settings)."""
    return {(m, p): [_run(m, p, seed=s) for s in SEEDS] for m in METHOD_IDS for p in ("a red cube", "a blue sphere")}


PAIRS = (("a red cube", "a blue sphere"), ("a blue sphere", "a red cube"))


@needs_weights
@pytest.mark.parametrize("method_id", METHOD_IDS)
def test_shipped_weights_follow_the_caption_colour(method_id, shipped_samples):
    for prompt, other in PAIRS:
        for seed, asset in zip(SEEDS, shipped_samples[method_id, prompt], strict=True):
            mean = asset.points.colors.mean(0)
            named = np.asarray(text.COLOURS[prompt.split()[1]])
            other_colour = np.asarray(text.COLOURS[other.split()[1]])
            assert np.linalg.norm(mean - named) < np.linalg.norm(mean - other_colour), (method_id, prompt, seed, mean)


@needs_weights
@pytest.mark.parametrize("method_id", METHOD_IDS)
def test_shipped_weights_follow_the_caption_shape(method_id, shipped_samples, cube_and_sphere):
    """Over four seeds, a family's samples are nearer (mean Chamfer) to their caption's reference than the other's."""
    for prompt, other in PAIRS:
        clouds = [asset.points.points for asset in shipped_samples[method_id, prompt]]
        own = np.mean([_chamfer(pts, cube_and_sphere[prompt].points) for pts in clouds])
        theirs = np.mean([_chamfer(pts, cube_and_sphere[other].points) for pts in clouds])
        assert own < theirs, (method_id, prompt, own, theirs)


@needs_weights
def test_shipped_weights_are_small_and_recorded():
    total = 0
    for m in METHOD_IDS:
        path = weights_path(m)
        total += path.stat().st_size
        record = json.loads(path.with_suffix(".json").read_text())
        assert record["weights_sha256"] and record["training"]["steps"] > 0 and record["parameters"]["sampling"] < 3e6
        assert models.load(path).family == models.METHOD_FAMILY[m]
    assert total < 20 * 2**20


@needs_weights
def test_unknown_words_are_named_in_the_notes_and_nothing_known_is_refused():
    asset = _run("vae", "a red cube with wings")
    assert any("'wings'" in n and "'with'" in n for n in asset.notes)
    with pytest.raises(InvalidInput, match="vocabulary"):
        _run("gan", "an elephant on the moon")


@needs_weights
def test_the_protocol_scores_a_family_run_against_its_caption_reference(tmp_path: Path):
    from eval.judging.trilemma import write_reference_mesh
    from eval.runs.runner import run_to_completion
    from eval.runs.store import Store

    ref = write_reference_mesh("a red cube", tmp_path / "ref.ply", resolution=48)
    done = run_to_completion(
        "gan",
        Inputs.text("a red cube"),
        store=Store(tmp_path / "r.db"),
        out_root=tmp_path,
        context={"reference_mesh": str(ref), "samples": 5000, "clip_models": []},
    )
    rows = {m["name"]: m["value"] for m in done.record["metrics"]}
    assert 0 < rows["chamfer_l1"] < 0.2 and rows["f_score@0.05"] > 0


@needs_weights
def test_a_caption_study_scores_each_run_against_its_own_captions_reference(tmp_path: Path, monkeypatch):
    """`captions:` in a study file: each caption gets its reference mesh, written once, and every run its
    Chamfer / F-score / IoU rows against it; the VAE's cube is nearer its own reference than the sphere's."""
    from eval.judging.protocol import score
    from eval.runs.store import Store
    from eval.study import load_study, run_study
    from methods.export import load_asset

    monkeypatch.setenv("TRILEMMA_OUTPUTS", str(tmp_path / "outputs"))
    path = tmp_path / "shapes.yaml"
    path.write_text(
        f"name: shapes\noutput: {tmp_path / 'out'}\nstore: {tmp_path / 's.db'}\nseeds: 1\ninputs:\n"
        "  - captions: [a red cube, a blue sphere]\n  - captions: heldout\n    limit: 1\n"
        "methods: [vae, gan]\nprotocol:\n  views: 2\n  resolution: 64\n  options: {samples: 5000}\n"
    )
    study = load_study(path)
    refs = {item.prompt: item.reference_mesh for item in study.items()}
    assert len(study.cells) == 6 and len(refs) == 3
    assert all(Path(r).is_file() and Path(r).is_relative_to(tmp_path / "outputs") for r in refs.values())
    mtime = Path(refs["a red cube"]).stat().st_mtime_ns
    assert {i.prompt: i.reference_mesh for i in load_study(path).items()} == refs
    assert Path(refs["a red cube"]).stat().st_mtime_ns == mtime  # written once, reused

    summary = run_study(study, progress=False)
    assert summary.done == 6, summary
    store = Store(study.store)
    runs = {
        (r["method"], json.loads(r["inputs"])["prompt"]): r
        for r in store.read("SELECT * FROM runs WHERE study = 'shapes'")
    }
    for (method, prompt), run in runs.items():
        got = {
            m["name"]: m for m in store.read("SELECT name, value, settings FROM metrics WHERE run_id = ?", (run["id"],))
        }
        assert {"chamfer_l1", "f_score@0.01", "volume_iou"} <= set(got), (method, prompt, sorted(got))
        assert Path(refs[prompt]).name in got["chamfer_l1"]["settings"]
    cube = runs["vae", "a red cube"]
    own = float(
        next(iter(store.read("SELECT value FROM metrics WHERE run_id = ? AND name = 'chamfer_l1'", (cube["id"],))))[
            "value"
        ]
    )
    asset = load_asset(cube["asset_path"])
    rows = score(
        asset,
        Inputs.text("a red cube"),
        {"reference_mesh": refs["a blue sphere"], "samples": 5000, "clip_models": [], "views": 2, "resolution": 64},
    )
    other = next(r.value for r in rows if r.name == "chamfer_l1")
    assert own < other, (own, other)


def test_listing_the_families_imports_no_torch():
    code = (
        "import sys; import methods.families; from methods.registry import listing; rows = listing('text');"
        "assert {'vae', 'gan', 'ddpm', 'score-sde'} <= {r['id'] for r in rows};"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = python_c(code)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ----------------------------------------------------------------------------- CLI and the Text tab


@needs_weights
def test_cli_runs_each_family(tmp_path: Path):
    code = (
        "import sys, methods.families; from methods.__main__ import main\n"
        "for m in ('vae', 'gan', 'ddpm', 'score-sde'):\n"
        "    extra = ['--set', 'steps=5'] if m in ('ddpm', 'score-sde') else []\n"
        f"    rc = main(['run', m, '--prompt', 'a small green mug', '--out', {str(tmp_path)!r} + '/' + m,"
        f" '--db', {str(tmp_path / 'r.db')!r}, '--quiet'] + extra)\n"
        "    assert rc == 0, m\n"
        "assert main(['run', 'vae', '--prompt', 'zebra', '--out', '/tmp/never', '--quiet']) == 2\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for m in METHOD_IDS:
        record = json.loads((tmp_path / m / "run.json").read_text())
        assert record["status"] == "done" and (tmp_path / m / "asset.glb").stat().st_size > 0
    assert "vocabulary" in proc.stderr


@needs_weights
def test_text_tab_runs_each_family():
    pytest.importorskip("gradio")
    from ui import generate

    files, report = generate.text_to_3d("a red cube", list(METHOD_IDS), 3, False, json.dumps(FAST))
    assert len(files) == 4 and all(Path(f).stat().st_size > 0 for f in files)
    assert [r["method"] for r in report["runs"]] == list(METHOD_IDS)
    assert all(r["status"] == "done" for r in report["runs"]), report["runs"]
