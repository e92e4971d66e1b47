"""Train one family on the procedural shape set: ``python -m methods.families.train --family vae``.

Seeded and resumable (``--resume`` continues from ``<work>/<family>/checkpoint.pt``); stops at
``--steps`` or after ``--minutes`` of training, whichever comes first; logs losses with a progress bar;
writes ``<out>/<file>.safetensors`` (the sampling network, EMA weights) and ``<out>/<file>.json``
(the training record). ``--out`` defaults to assets/weights, where the app loads them from.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.families import data, diffusion, gan, models, sde, vae
from methods.families.nets import NetConfig, count_parameters, multi_hot
from methods.families.text import tokenize

ROOT = Path(__file__).resolve().parents[2]
FILE_STEM = {"vae": "vae", "gan": "gan", "ddpm": "ddpm", "sde": "sde"}
_NOISE = {"noise_offset": 1.0, "noise_coarse": 0.5}  # see diffusion.StructuredNoise
DEFAULTS: dict[str, dict[str, Any]] = {
    # lr, batch, EMA decay and per-family knobs; steps are capped by --minutes in practice
    "vae": {"lr": 1e-3, "batch": 16, "ema": 0.995, "beta": 1.0, "caption_dropout": 0.0},
    "gan": {"lr": 4e-4, "lr_d": 8e-4, "batch": 16, "ema": 0.995, "caption_dropout": 0.0},
    "ddpm": {"lr": 2e-3, "batch": 8, "ema": 0.995, "caption_dropout": 0.1, "min_snr_gamma": 5.0} | _NOISE,
    "sde": {"lr": 2e-3, "batch": 8, "ema": 0.995, "caption_dropout": 0.1, "min_snr_gamma": 5.0} | _NOISE,
}
WORD_DROPOUT = 0.1  # each word of a caption is dropped with this probability (partial prompts work)


class EMA:
    """Exponential moving average of a network's weights, with the usual warm-up of the decay."""

    def __init__(self, net: nn.Module, decay: float):
        self.net = copy.deepcopy(net).eval()
        self.decay = decay
        self.updates = 0
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.net.state_dict().values(), net.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            else:
                e.copy_(p)


def prediction_problem(family: str, prediction: str | None, x0_floor: float | None, weight_cap: float | None) -> str:
    """Why a network-output choice cannot train (empty if it can): v is the sde's, and has its own loss weight."""
    if prediction not in (None, "eps") and family != "sde":
        return f"--prediction {prediction} is for the sde family; DDPM predicts eps (Ho et al.)"
    if prediction == "v" and (x0_floor is not None or weight_cap is not None):
        return "--x0-floor / --weight-cap weigh the eps loss; the v loss already weighs x0 errors by 1 + SNR"
    return ""


class Trainer:
    """One family's networks, optimisers and training step. ``step`` returns the losses of the step."""

    def __init__(self, family: str, cfg: NetConfig, hp: dict[str, Any], seed: int = 0, device: str = "cpu"):
        if family not in models.FAMILIES:
            raise ValueError(f"unknown family {family!r}; one of {', '.join(models.FAMILIES)}")
        torch.manual_seed(seed)
        self.family, self.cfg, self.hp, self.device = family, cfg, hp, device
        self.noise = diffusion.StructuredNoise(hp.get("noise_offset", 0.0), hp.get("noise_coarse", 0.0))
        problem = prediction_problem(family, hp.get("prediction"), hp.get("x0_floor"), hp.get("weight_cap"))
        if problem:
            raise ValueError(problem)
        self.prediction = hp.get("prediction", "eps")
        self.hparams = models.default_hparams(family, hp.get("schedule", "linear"), self.noise, self.prediction)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.schedule = diffusion.NoiseSchedule(**self.hparams.get("schedule", {}))
        self.sde = sde.VPSDE(**self.hparams.get("sde", {}))
        self.norm = diffusion.Standardizer()
        if family == "vae":
            self.net: nn.Module = vae.CVAE(cfg).to(device)
            self.sampler_part = self.net.sampler
        elif family == "gan":
            self.net = models.sampling_net("gan", cfg).to(device)
            self.disc = gan.Discriminator(cfg).to(device)
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=hp.get("lr_d", 4e-4), betas=(0.0, 0.9))
            self.sampler_part = self.net
        else:
            self.net = models.sampling_net(family, cfg).to(device)
            self.sampler_part = self.net
        betas = (0.0, 0.9) if family == "gan" else (0.9, 0.999)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=hp["lr"], betas=betas)
        self.ema = EMA(self.sampler_part, hp.get("ema", 0.995))
        self.step_count = 0

    # -- losses

    def _loss(self, x: torch.Tensor, counts: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, dict]:
        if self.family == "vae":
            return vae.vae_loss(self.net, x, counts, g, self.hp.get("beta", 1.0))
        weights = {"x0_floor": self.hp.get("x0_floor"), "weight_cap": self.hp.get("weight_cap")}
        gamma = self.hp.get("min_snr_gamma")
        if self.family == "ddpm":
            loss = diffusion.ddpm_loss(self.net, self.schedule, x, counts, g, gamma, self.norm, self.noise, **weights)
        else:
            loss = sde.sde_loss(
                self.net, self.sde, x, counts, g, gamma, self.norm, self.noise, **weights, prediction=self.prediction
            )
        return loss, {}

    def step(self, x: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch (grids in [0, 1], caption word counts)."""
        self.net.train()
        if self.family == "gan":
            logs = self._gan_step(x, counts)
        else:
            loss, logs = self._loss(x, counts, self.generator)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            self.opt.step()
            logs = {"loss": float(loss.detach()), **logs}
        self.ema.update(self.sampler_part)
        self.step_count += 1
        return logs

    def _gan_step(self, x: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            fake = gan.generate(self.net, counts, self.generator)
        d_loss = gan.d_hinge(self.disc, x, fake, counts)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        fake = gan.generate(self.net, counts, self.generator)
        g_loss = gan.g_hinge(self.disc, fake, counts)
        self.opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt.step()
        d, g = float(d_loss.detach()), float(g_loss.detach())
        return {"loss": d, "d": d, "g": g}

    @torch.no_grad()
    def fixed_loss(self, x: torch.Tensor, counts: torch.Tensor, seed: int = 1234) -> float:
        """The training loss on a fixed batch with fixed noise (for tests and the record); GAN: D's hinge loss."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        self.net.eval()
        if self.family == "gan":
            fake = gan.generate(self.net, counts, g)
            return float(gan.d_hinge(self.disc, x, fake, counts))
        return float(self._loss(x, counts, g)[0])

    def set_standardizer(self, grids01: torch.Tensor) -> None:
        """Diffusion families: standardise with the training set's per-channel statistics (kept in hparams)."""
        if self.family in ("ddpm", "sde"):
            self.norm = diffusion.Standardizer.from_data(grids01)
            self.hparams["norm"] = self.norm.to_dict()

    # -- state

    def export(self) -> models.FamilyModel:
        """The shipped model: the EMA copy of the sampling network."""
        return models.FamilyModel(self.family, self.ema.net, self.cfg, self.hparams)

    def parameters(self) -> dict[str, int]:
        out = {"sampling": count_parameters(self.sampler_part), "trained": count_parameters(self.net)}
        if self.family == "gan":
            out["discriminator"] = count_parameters(self.disc)
            out["trained"] += out["discriminator"]
        return out

    def state_dict(self) -> dict[str, Any]:
        state = {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "ema": self.ema.net.state_dict(),
            "ema_updates": self.ema.updates,
            "step": self.step_count,
            "generator": self.generator.get_state(),
        }
        if self.family == "gan":
            state.update(disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.ema.net.load_state_dict(state["ema"])
        self.ema.updates = state["ema_updates"]
        self.step_count = state["step"]
        self.generator.set_state(state["generator"])
        if self.family == "gan":
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])


# ----------------------------------------------------------------------------- batches


def caption_tokens(captions: list[str]) -> list[tuple[int, ...]]:
    return [tokenize(c).ids for c in captions]


def make_batch(
    grids: torch.Tensor,
    tokens: list[tuple[int, ...]],
    batch: int,
    rng: np.random.Generator,
    caption_dropout: float = 0.0,
    word_dropout: float = WORD_DROPOUT,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch with caption dropout (the empty caption, for guidance) and word dropout."""
    idx = rng.integers(0, len(grids), size=batch)
    ids: list[list[int]] = []
    for i in idx:
        words = list(tokens[i])
        if rng.random() < caption_dropout:
            words = []
        elif word_dropout > 0 and len(words) > 1:
            kept = [w for w in words if rng.random() >= word_dropout]
            words = kept or words
        ids.append(words)
    return grids[torch.from_numpy(idx)].to(device), multi_hot(ids, device)


# ----------------------------------------------------------------------------- the run


def cached_dataset(
    work: Path, per_caption: int, seed: int, resolution: int, limit: int = 0
) -> tuple[np.ndarray, list[str]]:
    """data.build_dataset('train', ...), cached in ``work`` under a key that includes data.py's source."""
    key = data.generator_digest(f"{per_caption}|{seed}|{resolution}|{data.GRID}|{limit}")[:16]
    path = work / f"train-data-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["grids"].astype(np.float32), [str(c) for c in z["captions"]]
    grids, captions = data.build_dataset("train", per_caption, seed, resolution, limit_captions=limit)
    work.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # two families may build it at once
    np.savez_compressed(tmp, grids=grids.astype(np.float16), captions=np.asarray(captions))
    tmp.replace(path)
    return grids.astype(np.float16).astype(np.float32), captions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one family and write its weights and record; returns the record."""
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    family = args.family
    given = (("lr", args.lr), ("batch", args.batch), ("schedule", args.schedule), ("beta", args.beta))
    given += (("x0_floor", args.x0_floor), ("weight_cap", args.weight_cap))
    given += (("prediction", args.prediction),)
    hp = {**DEFAULTS[family], **{k: v for k, v in given if v is not None}}
    cfg = NetConfig(channels=tuple(args.channels), cond_dim=args.cond_dim, word_dim=args.word_dim, coords=args.coords)
    work = Path(args.work) / family
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "checkpoint.pt"
    state = torch.load(ckpt_path, weights_only=False) if args.resume and ckpt_path.exists() else None
    if state is not None and state.get("prediction"):  # what the network outputs is the checkpoint's to say
        if args.prediction is not None and args.prediction != state["prediction"]:
            raise SystemExit(f"{ckpt_path} predicts {state['prediction']}, not {args.prediction}; drop --resume")
        hp["prediction"] = state["prediction"]
    problem = prediction_problem(family, hp.get("prediction"), hp.get("x0_floor"), hp.get("weight_cap"))
    if problem:  # e.g. --x0-floor on resuming a v checkpoint
        raise SystemExit(problem)
    trainer = Trainer(family, cfg, hp, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    history: list[dict[str, float]] = []
    segments: list[dict[str, Any]] = []  # one per run of this CLI: steps, minutes and lr of each
    elapsed = 0.0
    if state is not None:
        if state["family"] != family or NetConfig.from_dict(state["config"]) != cfg:
            raise SystemExit(f"{ckpt_path} was trained with another family or config; drop --resume or --work")
        trainer.load_state_dict(state["trainer"])
        rng.bit_generator.state = state["rng"]
        history, elapsed = state["history"], state["elapsed"]
        segments = state.get("segments") or [  # checkpoints written before segments were kept
            {
                "from_step": 0,
                "to_step": trainer.step_count,
                "lr": trainer.opt.param_groups[0]["lr"],
                "minutes": round(elapsed / 60, 2),
            }
        ]
        if args.lr is not None:  # an explicit --lr overrides the optimiser's saved one (e.g. to anneal)
            for group in trainer.opt.param_groups:
                group["lr"] = args.lr
        print(f"resumed {family} at step {trainer.step_count} ({elapsed / 60:.1f} min trained)", file=sys.stderr)

    t0 = time.perf_counter()
    grids_np, captions = cached_dataset(
        Path(args.work), args.per_caption, args.seed, cfg.resolution, args.limit_captions
    )
    data_seconds = time.perf_counter() - t0
    grids = torch.from_numpy(grids_np)
    trainer.set_standardizer(grids)
    tokens = caption_tokens(captions)
    fixed_x, fixed_c = make_batch(grids, tokens, 32, np.random.default_rng(999), word_dropout=0.0)

    def save_checkpoint() -> None:
        segment.update(to_step=trainer.step_count, minutes=round((elapsed - elapsed_at_start) / 60, 2))
        state = {
            "family": family,
            "config": cfg.to_dict(),
            "trainer": trainer.state_dict(),
            "rng": rng.bit_generator.state,
            "history": history,
            "segments": segments,
            "elapsed": elapsed,
            "prediction": trainer.prediction,
        }
        torch.save(state, ckpt_path.with_suffix(".tmp"))
        ckpt_path.with_suffix(".tmp").replace(ckpt_path)

    budget = args.minutes * 60.0 if args.minutes else float("inf")
    start_step = trainer.step_count
    hp["lr"] = trainer.opt.param_groups[0]["lr"]  # the rate this run trains at (segments: every run's)
    segment = {"from_step": start_step, "to_step": start_step, "lr": trainer.opt.param_groups[0]["lr"], "minutes": 0.0}
    segment |= {k: hp[k] for k in ("min_snr_gamma", "x0_floor", "weight_cap", "prediction") if k in hp}
    segments.append(segment)
    elapsed_at_start = elapsed
    run_start = time.perf_counter()
    last_save = run_start
    window: list[dict[str, float]] = []
    bar = tqdm(total=args.steps, initial=start_step, desc=f"train {family}", unit="step", dynamic_ncols=True)
    while trainer.step_count < args.steps and elapsed + (time.perf_counter() - run_start) < budget:
        x, c = make_batch(grids, tokens, hp["batch"], rng, hp["caption_dropout"])
        window.append(trainer.step(x, c))
        bar.update(1)
        if len(window) == args.log_every or trainer.step_count == args.steps:
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            history.append({"step": trainer.step_count, **{k: round(v, 5) for k, v in mean.items()}})
            bar.set_postfix({k: f"{v:.4g}" for k, v in mean.items()})
            window = []
        if time.perf_counter() - last_save > 120:
            elapsed_now = elapsed + time.perf_counter() - run_start
            elapsed, run_start = elapsed_now, time.perf_counter()
            save_checkpoint()
            last_save = time.perf_counter()
    bar.close()
    elapsed += time.perf_counter() - run_start
    save_checkpoint()

    out = Path(args.out)
    stem = FILE_STEM[family]
    weights = models.save(trainer.export(), out / f"{stem}.safetensors", {"steps": trainer.step_count})
    tail = history[-max(1, min(5, len(history))) :]
    record = {
        "family": family,
        "weights": weights.name,
        "weights_bytes": weights.stat().st_size,
        "weights_sha256": _sha256(weights),
        "parameters": trainer.parameters(),
        "config": cfg.to_dict(),
        "hparams": trainer.hparams,
        "training": {
            **hp,
            "word_dropout": WORD_DROPOUT,
            "steps": trainer.step_count,
            "steps_this_run": trainer.step_count - start_step,
            "seed": args.seed,
            "threads": args.threads,
            "train_seconds": round(elapsed, 1),
            "data_seconds": round(data_seconds, 1),
            "resumed": bool(args.resume and start_step > 0),
            "segments": segments,
        },
        "data": {
            "train_captions": len(set(captions)),
            "heldout_captions": len(data.split_captions()[1]),
            "samples": len(captions),
            "per_caption": args.per_caption,
            "limit_captions": args.limit_captions,
            "grid": data.GRID,
            "model_resolution": cfg.resolution,
        },
        "final_loss": {k: round(float(np.mean([h[k] for h in tail])), 5) for k in tail[0] if k != "step"}
        if tail
        else {},
        "fixed_batch_loss": round(trainer.fixed_loss(fixed_x, fixed_c), 5),
        "history": history,
        "hardware": {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    print(
        f"{family}: {trainer.step_count} steps in {elapsed / 60:.1f} min, final {record['final_loss']}, "
        f"{weights} ({weights.stat().st_size / 2**20:.2f} MB)",
        file=sys.stderr,
    )
    return record


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m methods.families.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", required=True, choices=models.FAMILIES)
    p.add_argument("--steps", type=int, default=20000, help="stop at this many steps (total, across resumes)")
    p.add_argument("--minutes", type=float, default=60.0, help="stop after this much training time (0: no limit)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default per family)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default per family)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", choices=("linear", "cosine"), default=None, help="noise schedule (diffusion)")
    p.add_argument("--beta", type=float, default=None, help="KL weight (vae)")
    p.add_argument("--x0-floor", type=float, default=None, help="floor of the loss's x0 weight (diffusion)")
    p.add_argument("--weight-cap", type=float, default=None, help="cap of the eps-loss weight (diffusion)")
    p.add_argument("--prediction", choices=("eps", "v"), default=None, help="what the sde's network predicts")
    p.add_argument("--resume", action="store_true", help="continue from <work>/<family>/checkpoint.pt")
    p.add_argument("--out", default=str(ROOT / "assets" / "weights"), help="where the weights and record go")
    p.add_argument("--work", default=str(ROOT / "outputs" / "families"), help="checkpoints for --resume")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--per-caption", type=int, default=4, help="shapes drawn per training caption")
    p.add_argument("--limit-captions", type=int, default=0, help="train on this many captions only (smoke runs)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--channels", type=int, nargs=3, default=list(NetConfig().channels), metavar=("C16", "C8", "C4"))
    p.add_argument("--cond-dim", type=int, default=NetConfig().cond_dim)
    p.add_argument("--word-dim", type=int, default=NetConfig().word_dim)
    p.add_argument("--coords", action="store_true", help="UNet3D input gets the voxel coordinates (diffusion)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    problem = prediction_problem(args.family, args.prediction, args.x0_floor, args.weight_cap)
    if problem:
        p.error(problem)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
