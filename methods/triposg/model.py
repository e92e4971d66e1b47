"""TripoSG's networks (Li et al. 2025), written from the paper and the structure of the official code.

Parameter names and shapes equal the official ``TripoSGDiTModel`` and ``TripoSGVAEModel`` state_dicts, so the
released ``transformer/`` and ``vae/`` files load with ``strict=True``:

- the DiT: the timestep as an extra token in front of the latents, pre-norm blocks with self-attention,
  cross-attention to the DINOv2 tokens and a GELU MLP; QK-RMSNorm; U-Net skips into the second half;
- the VAE decoder: latents -> ``post_quant`` -> self-attention stack (the kv set, computed once) ->
  for each query point a frequency embedding -> one cross-attention block -> one logit, negated
  (positive inside). The encoder is built for the file's keys only: inference never runs it.

Two details of the checkpoints: attention heads take their q, k, v from an *interleaved* split of the
concatenated projections (head h reads columns [3hd, 3hd + 3d) of [q | k | v]), and the skip blocks apply the
LayerNorm after the skip Linear (official comment: "this is an error"; the weights were trained with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DiTConfig:
    """``transformer/config.json`` (released values by default)."""

    num_attention_heads: int = 16
    width: int = 2048
    in_channels: int = 64
    num_layers: int = 21
    cross_attention_dim: int = 1024


@dataclass(frozen=True)
class VAEConfig:
    """``vae/config.json`` (released values by default)."""

    in_channels: int = 3
    latent_channels: int = 64
    num_attention_heads: int = 8
    width_encoder: int = 512
    width_decoder: int = 1024
    num_layers_encoder: int = 8
    num_layers_decoder: int = 16
    embed_frequency: int = 8
    embed_include_pi: bool = False


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weights' dtype (diffusers' FP32LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm over the last dim in float32, learned weight (diffusers' RMSNorm with elementwise affine)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            h = h.to(self.weight.dtype)
        return (h * self.weight).to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention with the official interleaved head split; no q/k/v bias, output bias."""

    def __init__(
        self, dim: int, heads: int, context_dim: int | None = None, qk_norm: bool = False, norm_context: bool = False
    ):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.is_cross = context_dim is not None
        kv_dim = context_dim if context_dim is not None else dim
        if norm_context:
            self.norm_cross = nn.LayerNorm(kv_dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        if qk_norm:
            self.norm_q = RMSNorm(self.head_dim)
            self.norm_k = RMSNorm(self.head_dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim, bias=True), nn.Dropout(0.0)])

    def heads_of(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """q, k, v as (B, H, L, d), after the interleaved split and the QK norms."""
        b, n, _ = x.shape
        h, d = self.heads, self.head_dim
        if not self.is_cross:
            qkv = torch.cat([self.to_q(x), self.to_k(x), self.to_v(x)], dim=-1).view(b, n, h, 3 * d)
            q, k, v = qkv.split(d, dim=-1)
        else:
            if hasattr(self, "norm_cross"):
                context = self.norm_cross(context)
            q = self.to_q(x).view(b, n, h, d)
            kv = torch.cat([self.to_k(context), self.to_v(context)], dim=-1).view(b, context.shape[1], h, 2 * d)
            k, v = kv.split(d, dim=-1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if hasattr(self, "norm_q"):
            q, k = self.norm_q(q), self.norm_k(k)
        return q, k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.heads_of(x, context)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(x.shape[0], -1, self.heads * self.head_dim).to(q.dtype)
        return self.to_out[0](out)


class GELUProjection(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """Linear(dim, 4 dim) -> exact GELU -> Linear(4 dim, dim) (diffusers' FeedForward names: net.0.proj, net.2)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim, bias=True)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class DiTBlock(nn.Module):
    """Pre-norm block: [skip] -> self-attention -> cross-attention -> MLP, each a residual."""

    def __init__(
        self,
        dim: int,
        heads: int,
        self_attention: bool = True,
        cross_attention_dim: int | None = None,
        norm_context: bool = False,
        qk_norm: bool = False,
        skip: bool = False,
    ):
        super().__init__()
        if self_attention:
            self.norm1 = FP32LayerNorm(dim, eps=1e-5)
            self.attn1 = Attention(dim, heads, None, qk_norm)
        if cross_attention_dim is not None:
            self.norm2 = FP32LayerNorm(dim, eps=1e-5)
            self.attn2 = Attention(dim, heads, cross_attention_dim, qk_norm, norm_context)
        self.norm3 = FP32LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim, 4 * dim)
        if skip:
            self.skip_norm = FP32LayerNorm(dim, eps=1e-5)
            self.skip_linear = nn.Linear(2 * dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        if hasattr(self, "skip_linear"):
            x = self.skip_norm(self.skip_linear(torch.cat([skip, x], dim=-1)))  # skip first, norm last (official)
        if hasattr(self, "attn1"):
            x = x + self.attn1(self.norm1(x))
        if hasattr(self, "attn2"):
            x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers ``Timesteps(dim, flip_sin_to_cos=False, downscale_freq_shift=0)``: [sin(t f), cos(t f)], float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, hidden)
        self.linear_2 = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x)))


class TripoSGDiT(nn.Module):
    """The denoiser: (B, N, C) latents, (B,) timesteps (sigma * 1000), (B, M, cross) tokens -> (B, N, C) velocity."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        w, layers = config.width, config.num_layers
        self.time_proj = TimestepEmbedding(w, 4 * w, w)
        self.proj_in = nn.Linear(config.in_channels, w, bias=True)
        self.blocks = nn.ModuleList(
            DiTBlock(
                w,
                config.num_attention_heads,
                self_attention=True,
                cross_attention_dim=config.cross_attention_dim,
                qk_norm=True,
                skip=i > layers // 2,
            )
            for i in range(layers)
        )
        self.norm_out = nn.LayerNorm(w)
        self.proj_out = nn.Linear(w, config.in_channels, bias=True)

    def time_token(self, timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.time_proj(timestep_sinusoid(timestep, self.config.width).to(dtype))[:, None]

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n = latents.shape[1]
        if timestep.ndim == 0:
            timestep = timestep.expand(len(latents))
        h = torch.cat([self.time_token(timestep, latents.dtype), self.proj_in(latents)], dim=1)
        half = self.config.num_layers // 2
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            h = block(h, context, skips.pop() if i > half else None)
            if i < half:
                skips.append(h)
        return self.proj_out(self.norm_out(h)[:, -n:])


class FrequencyEmbedding(nn.Module):
    """[x, sin(x_d 2^k) (d-major, k fastest), cos(...)]: 3 + 6F channels (times pi if ``include_pi``)."""

    def __init__(self, num_freqs: int, include_pi: bool):
        super().__init__()
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        if include_pi:
            freqs = freqs * torch.pi
        self.register_buffer("frequencies", freqs, persistent=False)
        self.out_dim = 3 * (2 * num_freqs + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = (x[..., None] * self.frequencies.to(x.dtype)).reshape(*x.shape[:-1], -1)  # in x's dtype
        return torch.cat([x, emb.sin(), emb.cos()], dim=-1)


class TripoSGEncoder(nn.Module):
    """The VAE encoder's modules (released keys); not run at inference (it needs farthest-point sampling)."""

    def __init__(self, in_channels: int, dim: int, heads: int, layers: int):
        super().__init__()
        self.proj_in = nn.Linear(in_channels, dim, bias=True)
        self.blocks = nn.ModuleList(
            [DiTBlock(dim, heads, self_attention=False, cross_attention_dim=dim, norm_context=True)]
            + [DiTBlock(dim, heads) for _ in range(layers)]
        )
        self.norm_out = nn.LayerNorm(dim)


class TripoSGDecoder(nn.Module):
    def __init__(self, in_channels: int, dim: int, heads: int, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            [DiTBlock(dim, heads) for _ in range(layers)]
            + [DiTBlock(dim, heads, self_attention=False, cross_attention_dim=dim, norm_context=True)]
        )
        self.proj_query = nn.Linear(in_channels, dim, bias=True)
        self.norm_out = nn.LayerNorm(dim)
        self.proj_out = nn.Linear(dim, 1, bias=True)


class TripoSGVAE(nn.Module):
    """Shape latents -> a field. ``kv(latents)`` once, then ``logits(kv, points)`` for any number of point chunks."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.embedder = FrequencyEmbedding(config.embed_frequency, config.embed_include_pi)
        self.encoder = TripoSGEncoder(
            config.in_channels + self.embedder.out_dim,
            config.width_encoder,
            config.num_attention_heads,
            config.num_layers_encoder,
        )
        self.decoder = TripoSGDecoder(
            self.embedder.out_dim, config.width_decoder, config.num_attention_heads, config.num_layers_decoder
        )
        self.quant = nn.Linear(config.width_encoder, 2 * config.latent_channels, bias=True)
        self.post_quant = nn.Linear(config.latent_channels, config.width_decoder, bias=True)

    def reset_buffers(self) -> None:
        """The frequencies (not in the state_dict; set again after loading onto meta-built modules)."""
        device = "cpu" if self.embedder.frequencies.is_meta else self.embedder.frequencies.device
        freqs = 2.0 ** torch.arange(self.config.embed_frequency, dtype=torch.float32, device=device)
        if self.config.embed_include_pi:
            freqs = freqs * torch.pi
        self.embedder.frequencies = freqs

    def kv(self, latents: torch.Tensor) -> torch.Tensor:
        """The decoder's self-attention stack over ``post_quant(latents)`` (no latent scale factor)."""
        h = self.post_quant(latents)
        for block in self.decoder.blocks[:-1]:
            h = block(h)
        return h

    def logits(self, kv: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) world points -> (B, P, 1) logits, positive inside (the official output times -1)."""
        dec = self.decoder
        # the Fourier features in float32: bfloat16 coordinates would snap to steps of 2**-7 near 1, the spacing
        # of a 256 grid (the official code casts the points to the model's dtype first; equal in float32)
        q = dec.proj_query(self.embedder(points.float()).to(kv.dtype))
        h = dec.blocks[-1](q, kv)
        return -dec.proj_out(dec.norm_out(h))

    def decode(self, latents: torch.Tensor, points: torch.Tensor, chunk_size: int = 50000) -> torch.Tensor:
        """The official ``vae.decode(latents, points).sample``: (B, P, 1)."""
        kv = self.kv(latents)
        step = points.shape[1] if chunk_size <= 0 else chunk_size
        return torch.cat([self.logits(kv, points[:, i : i + step]) for i in range(0, points.shape[1], step)], dim=1)
