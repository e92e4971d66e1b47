"""Hunyuan3D-2mini's networks, written from the published description of the official architecture.

Parameter names and shapes equal the official ``hy3dgen`` state_dicts, so a released
``model.fp16.safetensors`` (keys ``model.*``, ``vae.*``, ``conditioner.*``) loads with ``strict=True``:

- :class:`Hunyuan3DDiT` (``model.*``): a Flux-style MM-DiT over the shape latents with no positional
  embedding: double-stream blocks (latents and image tokens, joint attention, condition tokens first), then
  single-stream blocks over ``[cond; latents]``; a timestep MLP (and, for -fast / -turbo, a guidance MLP)
  modulates every block.
- :class:`ShapeVAE` (``vae.*``): the decoder half the release ships: ``post_kl`` then a pre-LN transformer
  over the latents, and a geometry decoder that cross-attends Fourier-embedded query points to them and
  answers an occupancy logit (positive inside).
- :class:`SingleImageEncoder` (``conditioner.*``): DINOv2 through ``methods.latent3d.DinoConditioner`` (the
  transformers-4.x key names of the release), after the official resize to 518 px and ImageNet normalisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods.hunyuan3d.config import DiTConfig, VAEConfig

EMBED_DIM = 256  # sinusoidal timestep / guidance embedding width


def timestep_embedding(t: torch.Tensor, dim: int = EMBED_DIM, time_factor: float = 1000.0) -> torch.Tensor:
    """The official sinusoidal embedding, [cos | sin], float32 arguments.

    Official quirk kept (it is what the weights were trained with): the DiT passes its ``time_factor`` (1000)
    positionally into the ``max_period`` slot, so the frequencies are 1000^(-i/half), while t is still
    multiplied by the default time factor 1000.
    """
    max_period = time_factor
    t = 1000.0 * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb.to(t.dtype) if torch.is_floating_point(t) else emb


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden)
        self.out_layer = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return x.to(dtype) * self.scale


class QKNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L, 3 H D) laid out K-major -> three (B, H, L, D)."""
    b, n, _ = qkv.shape
    q, k, v = qkv.view(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.norm = QKNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)


class Modulation(nn.Module):
    def __init__(self, dim: int, double: bool):
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim)

    def forward(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """(shift, scale, gate) [x2 for double], each (B, 1, dim)."""
        return list(self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1))


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def _gelu_mlp(hidden: int, mlp_ratio: float) -> nn.Sequential:
    mlp_hidden = int(hidden * mlp_ratio)
    return nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden))


class DoubleStreamBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.img_mod = Modulation(hidden, double=True)
        self.img_attn = SelfAttention(hidden, heads, qkv_bias)
        self.img_mlp = _gelu_mlp(hidden, mlp_ratio)
        self.txt_mod = Modulation(hidden, double=True)
        self.txt_attn = SelfAttention(hidden, heads, qkv_bias)
        self.txt_mlp = _gelu_mlp(hidden, mlp_ratio)

    def _qkv(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, attn: SelfAttention):
        q, k, v = _split_heads(attn.qkv((1 + scale) * _layer_norm(x) + shift), self.heads)
        q, k = attn.norm(q, k, v)
        return q, k, v

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i_shift1, i_scale1, i_gate1, i_shift2, i_scale2, i_gate2 = self.img_mod(vec)
        t_shift1, t_scale1, t_gate1, t_shift2, t_scale2, t_gate2 = self.txt_mod(vec)
        iq, ik, iv = self._qkv(img, i_shift1, i_scale1, self.img_attn)
        tq, tk, tv = self._qkv(txt, t_shift1, t_scale1, self.txt_attn)
        out = _attention(torch.cat([tq, iq], dim=2), torch.cat([tk, ik], dim=2), torch.cat([tv, iv], dim=2))
        n_txt = txt.shape[1]
        txt_out, img_out = out[:, :n_txt], out[:, n_txt:]
        img = img + i_gate1 * self.img_attn.proj(img_out)
        img = img + i_gate2 * self.img_mlp((1 + i_scale2) * _layer_norm(img) + i_shift2)
        txt = txt + t_gate1 * self.txt_attn.proj(txt_out)
        txt = txt + t_gate2 * self.txt_mlp((1 + t_scale2) * _layer_norm(txt) + t_shift2)
        return img, txt


class SingleStreamBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.hidden, self.heads = hidden, heads
        self.mlp_hidden = int(hidden * mlp_ratio)
        self.linear1 = nn.Linear(hidden, hidden * 3 + self.mlp_hidden)
        self.linear2 = nn.Linear(hidden + self.mlp_hidden, hidden)
        self.norm = QKNorm(hidden // heads)
        self.modulation = Modulation(hidden, double=False)

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(vec)
        hidden = self.linear1((1 + scale) * _layer_norm(x) + shift)
        qkv, mlp = torch.split(hidden, [3 * self.hidden, self.mlp_hidden], -1)
        q, k, v = _split_heads(qkv, self.heads)
        q, k = self.norm(q, k, v)
        out = self.linear2(torch.cat([_attention(q, k, v), F.gelu(mlp, approximate="tanh")], dim=2))
        return x + gate * out


class LastLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear((1 + scale[:, None, :]) * _layer_norm(x) + shift[:, None, :])


class Hunyuan3DDiT(nn.Module):
    """v = model(latents (B, N, C), t (B,) in [0, 1] (0 noise, 1 data), cond (B, T, context)[, guidance (B,)])."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.latent_in = nn.Linear(config.in_channels, hidden)
        self.time_in = MLPEmbedder(EMBED_DIM, hidden)
        if config.guidance_embed:
            self.guidance_in = MLPEmbedder(EMBED_DIM, hidden)
        self.cond_in = nn.Linear(config.context_in_dim, hidden)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(hidden, config.num_heads, config.mlp_ratio, config.qkv_bias) for _ in range(config.depth)
        )
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(hidden, config.num_heads, config.mlp_ratio) for _ in range(config.depth_single_blocks)
        )
        self.final_layer = LastLayer(hidden, config.in_channels)

    def modulation_vector(self, t: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        dtype = self.latent_in.weight.dtype
        vec = self.time_in(timestep_embedding(t.float(), EMBED_DIM, self.config.time_factor).to(dtype))
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("this DiT embeds the guidance scale (-fast / -turbo): pass guidance")
            g = timestep_embedding(guidance.float(), EMBED_DIM, self.config.time_factor).to(dtype)
            vec = vec + self.guidance_in(g)
        return vec

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, guidance: torch.Tensor | None = None
    ) -> torch.Tensor:
        vec = self.modulation_vector(t, guidance)
        latent = self.latent_in(x)
        ctx = self.cond_in(cond)
        for block in self.double_blocks:
            latent, ctx = block(latent, ctx, vec)
        joint = torch.cat([ctx, latent], dim=1)
        for block in self.single_blocks:
            joint = block(joint, vec)
        return self.final_layer(joint[:, ctx.shape[1] :], vec)


# ---------------------------------------------------------------------------------------------- the VAE


class FourierEmbedder(nn.Module):
    """[x, sin(f_k x_d), cos(f_k x_d)] with f_k = 2^k (x pi with include_pi), d-major, k fastest."""

    def __init__(self, num_freqs: int, include_pi: bool):
        super().__init__()
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        if include_pi:
            freqs = freqs * math.pi
        self.register_buffer("frequencies", freqs, persistent=False)
        self.num_freqs, self.include_pi = num_freqs, include_pi
        self.out_dim = 3 * (2 * num_freqs + 1)

    def reset_buffers(self) -> None:
        freqs = 2.0 ** torch.arange(self.num_freqs, dtype=torch.float32)
        self.frequencies = freqs * math.pi if self.include_pi else freqs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed = (x[..., None].contiguous() * self.frequencies.to(x)).view(*x.shape[:-1], -1)
        return torch.cat([x, embed.sin(), embed.cos()], dim=-1)


class _HeadNorms(nn.Module):
    """``attention.q_norm`` / ``attention.k_norm``: LayerNorm over the head dimension (or nothing)."""

    def __init__(self, head_dim: int, qk_norm: bool):
        super().__init__()
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()


class MultiheadAttention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, width * 3, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        self.attention = _HeadNorms(width // heads, qk_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        # per-head interleaved split: head h holds [q_h | k_h | v_h]
        q, k, v = self.c_qkv(x).view(b, n, self.heads, -1).chunk(3, dim=-1)
        q, k = self.attention.q_norm(q), self.attention.k_norm(k)
        return self.c_proj(_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)))


class MLP(nn.Module):
    def __init__(self, width: int, expand_ratio: int = 4):
        super().__init__()
        self.c_fc = nn.Linear(width, width * expand_ratio)
        self.c_proj = nn.Linear(width * expand_ratio, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.attn = MultiheadAttention(width, heads, qkv_bias, qk_norm)
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, qkv_bias, qk_norm) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class MultiheadCrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(width, width, bias=qkv_bias)
        self.c_kv = nn.Linear(width, width * 2, bias=qkv_bias)
        self.c_proj = nn.Linear(width, width)
        self.attention = _HeadNorms(width // heads, qk_norm)

    def keys_values(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, M, D) keys (normalised) and values of the latent set: computed once per grid."""
        b, m, _ = data.shape
        k, v = self.c_kv(data).view(b, m, self.heads, -1).chunk(2, dim=-1)  # per head [k_h | v_h]
        return self.attention.k_norm(k).transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.attention.q_norm(self.c_q(x).view(b, n, self.heads, -1)).transpose(1, 2)
        k, v = kv
        if k.shape[0] != b:
            k, v = k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)
        return self.c_proj(_attention(q, k, v))


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_expand_ratio: int, qkv_bias: bool, qk_norm: bool):
        super().__init__()
        self.attn = MultiheadCrossAttention(width, heads, qkv_bias, qk_norm)
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.ln_3 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MLP(width, mlp_expand_ratio)

    def keys_values(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attn.keys_values(self.ln_2(data))

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv)
        return x + self.mlp(self.ln_3(x))


class CrossAttentionDecoder(nn.Module):
    """Occupancy logits at query points (B, P, 3) given the decoded latent set (B, M, width)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.fourier_embedder = FourierEmbedder(config.num_freqs, config.include_pi)
        self.query_proj = nn.Linear(self.fourier_embedder.out_dim, config.width)
        self.cross_attn_decoder = ResidualCrossAttentionBlock(
            config.width, config.heads, config.mlp_expand_ratio, config.qkv_bias, config.qk_norm
        )
        self.ln_post = nn.LayerNorm(config.width) if config.ln_post else nn.Identity()  # eps 1e-5, as officially
        self.output_proj = nn.Linear(config.width, 1)

    def keys_values(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attn_decoder.keys_values(latents)

    def query(self, points: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, P, 1) logits for (B, P, 3) points, with the latents' keys/values from :meth:`keys_values`."""
        x = self.query_proj(self.fourier_embedder(points).to(kv[1].dtype))
        return self.output_proj(self.ln_post(self.cross_attn_decoder(x, kv)))

    def forward(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return self.query(queries, self.keys_values(latents))


class ShapeVAE(nn.Module):
    """The released VAE's decoder half: latents (B, N, embed_dim) -> latent set (B, N, width) -> occupancy."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.post_kl = nn.Linear(config.embed_dim, config.width)
        self.transformer = Transformer(
            config.width, config.num_decoder_layers, config.heads, config.qkv_bias, config.qk_norm
        )
        self.geo_decoder = CrossAttentionDecoder(config)

    @property
    def scale_factor(self) -> float:
        return self.config.scale_factor

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """The latent set the geometry decoder attends to (input already divided by the scale factor)."""
        return self.transformer(self.post_kl(latents))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Sampled latents -> latent set: ``1 / scale_factor * latents`` first, as the official pipeline."""
        return self(latents * (1.0 / self.config.scale_factor))


# ---------------------------------------------------------------------------------------- the conditioner


def pixel_values(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """The official conditioner's preprocessing: (B, 3, H, W) in [-1, 1] -> DINOv2 pixel values.

    (x + 1) / 2, bilinear resize (antialiased) so the shorter side is ``image_size``, centre crop, ImageNet
    normalisation.
    """
    x = (images + 1) / 2
    h, w = x.shape[-2:]
    if (h, w) != (image_size, image_size):
        if h <= w:
            size = (image_size, int(image_size * w / h))
        else:
            size = (int(image_size * h / w), image_size)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (x.shape[-2] - image_size) // 2, (x.shape[-1] - image_size) // 2
        x = x[..., top : top + image_size, left : left + image_size]
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SingleImageEncoder(nn.Module):
    """``conditioner.main_image_encoder``: DINOv2 tokens of the preprocessed image (CLS + patches)."""

    def __init__(self, dino_config: dict, image_size: int):
        super().__init__()
        from methods.latent3d import DinoConditioner

        self.main_image_encoder = DinoConditioner(dino_config)
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        dtype = next(self.main_image_encoder.parameters()).dtype
        return self.main_image_encoder(pixel_values(images.float(), self.image_size).to(dtype))

    def unconditional(self, cond: torch.Tensor) -> torch.Tensor:
        """The official unconditional tokens: zeros of the same shape."""
        return torch.zeros_like(cond)


class Hunyuan3D(nn.Module):
    """The released combined checkpoint: ``model`` (DiT), ``vae``, ``conditioner`` (state_dict keys as the file)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = Hunyuan3DDiT(config.dit)
        self.vae = ShapeVAE(config.vae)
        self.conditioner = SingleImageEncoder(config.dino, config.dino_image_size)

    def reset_buffers(self) -> None:
        """Non-persistent buffers (not in the file), set again after loading onto meta-built modules."""
        self.vae.geo_decoder.fourier_embedder.reset_buffers()
