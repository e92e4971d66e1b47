"""Point-E networks: the point diffusion transformers and the point-cloud SDF model.

Module and parameter names follow the official checkpoints exactly, so their state dicts load
unchanged. CLIP is not part of these modules (it is not in the official checkpoints either):
conditioning arrives as precomputed embeddings (see clip.py).

Tensors are NCL: ``x`` is ``[batch, channels, points]``. Models have no positional embedding;
the conditioning tokens come first and the output is read from the last ``n_ctx`` tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# CLIP ViT-L/14, which every official conditional model was trained with.
CLIP_TEXT_DIM = 768  # pooled, projected embedding
CLIP_GRID_DIM = 1024  # width of the vision transformer's patch tokens
CLIP_GRID_SIZE = 16  # 224 / 14 patches per side


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of (possibly fractional) timesteps ``[N]`` -> ``[N, dim]``, float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _init_linear(layer: nn.Linear, std: float) -> None:
    if layer.weight.is_meta:
        return
    nn.init.normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _split_heads(x: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """``[B, T, heads * parts * ch]`` laid out per head -> ``parts`` tensors ``[B, heads, T, ch]``."""
    b, t, _ = x.shape
    x = x.view(b, t, heads, parts, -1).permute(3, 0, 2, 1, 4)
    return list(x.unbind(0))


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, h * c)


class MLP(nn.Module):
    def __init__(self, width: int, init_scale: float):
        super().__init__()
        self.c_fc = nn.Linear(width, width * 4)
        self.c_proj = nn.Linear(width * 4, width)
        _init_linear(self.c_fc, init_scale)
        _init_linear(self.c_proj, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``c_qkv`` packs q, k, v per head (``[heads, 3, ch]``)."""

    def __init__(self, width: int, heads: int, init_scale: float):
        super().__init__()
        self.heads = heads
        self.c_qkv = nn.Linear(width, width * 3)
        self.c_proj = nn.Linear(width, width)
        _init_linear(self.c_qkv, init_scale)
        _init_linear(self.c_proj, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _split_heads(self.c_qkv(x), self.heads, 3)
        return self.c_proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Queries from ``x`` attend to ``data``; ``c_kv`` packs k, v per head."""

    def __init__(self, width: int, heads: int, init_scale: float):
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(width, width)
        self.c_kv = nn.Linear(width, width * 2)
        self.c_proj = nn.Linear(width, width)
        for layer in (self.c_q, self.c_kv, self.c_proj):
            _init_linear(layer, init_scale)

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        (q,) = _split_heads(self.c_q(x), self.heads, 1)
        k, v = _split_heads(self.c_kv(data), self.heads, 2)
        return self.c_proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, init_scale: float):
        super().__init__()
        self.attn = SelfAttention(width, heads, init_scale)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width, init_scale)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, init_scale: float):
        super().__init__()
        self.attn = CrossAttention(width, heads, init_scale)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, init_scale)
        self.ln_3 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), self.ln_2(data))
        return x + self.mlp(self.ln_3(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, init_scale: float):
        super().__init__()
        self.width = width
        scale = init_scale / math.sqrt(width)
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, scale) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class Perceiver(nn.Module):
    """A stack of cross-attention blocks (queries attend to fixed data; no self-attention)."""

    def __init__(self, width: int, layers: int, heads: int, init_scale: float):
        super().__init__()
        scale = init_scale / math.sqrt(width)
        self.resblocks = nn.ModuleList(ResidualCrossAttentionBlock(width, heads, scale) for _ in range(layers))

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, data)
        return x


# ----------------------------------------------------------------------------- diffusion transformers


class PointDiffusionTransformer(nn.Module):
    """The unconditional point diffusion transformer; the conditional models add tokens in front.

    ``forward`` returns ``[N, output_channels, n_ctx]``: epsilon in the first half of the channels,
    the learned-range variance value in the second.
    """

    def __init__(
        self,
        *,
        input_channels: int = 3,
        output_channels: int = 3,
        n_ctx: int = 1024,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
        init_scale: float = 0.25,
        time_token_cond: bool = False,
    ):
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.n_ctx = n_ctx
        self.time_token_cond = time_token_cond
        self.time_embed = MLP(width, init_scale / math.sqrt(width))
        self.ln_pre = nn.LayerNorm(width)
        self.backbone = Transformer(width, layers, heads, init_scale)
        self.ln_post = nn.LayerNorm(width)
        self.input_proj = nn.Linear(input_channels, width)
        self.output_proj = nn.Linear(width, output_channels)
        if not self.output_proj.weight.is_meta:
            nn.init.zeros_(self.output_proj.weight)
            nn.init.zeros_(self.output_proj.bias)

    @property
    def width(self) -> int:
        return self.backbone.width

    def _embed_time(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_embed(timestep_embedding(t, self.width).to(self.ln_pre.weight.dtype))

    def _check_points(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1] != self.input_channels or x.shape[2] != self.n_ctx:
            raise ValueError(f"expected x of shape [N, {self.input_channels}, {self.n_ctx}], got {list(x.shape)}")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_points(x)
        return self._forward_with_cond(x, [(self._embed_time(t), self.time_token_cond)])

    def _forward_with_cond(self, x: torch.Tensor, conds: Sequence[tuple[torch.Tensor, bool]]) -> torch.Tensor:
        """``conds``: (embedding ``[N, W]`` or ``[N, L, W]``, as_token); tokens go in front in order, others add."""
        h = self.input_proj(x.permute(0, 2, 1))
        tokens = []
        for emb, as_token in conds:
            if as_token:
                tokens.append(emb[:, None] if emb.ndim == 2 else emb)
            else:
                h = h + emb[:, None]
        n_extra = sum(tok.shape[1] for tok in tokens)
        if tokens:
            h = torch.cat([*tokens, h], dim=1)
        h = self.ln_post(self.backbone(self.ln_pre(h)))
        h = self.output_proj(h[:, n_extra:])
        return h.permute(0, 2, 1)


class CLIPImagePointDiffusionTransformer(PointDiffusionTransformer):
    """Conditioned on one CLIP vector per sample (``base40M-textvec``: the text embedding)."""

    def __init__(
        self,
        *,
        n_ctx: int = 1024,
        token_cond: bool = False,
        cond_drop_prob: float = 0.0,
        clip_dim: int = CLIP_TEXT_DIM,
        **kwargs: Any,
    ):
        super().__init__(n_ctx=n_ctx, **kwargs)
        self.token_cond = token_cond
        self.cond_drop_prob = cond_drop_prob  # training only; kept for the record
        self.clip_dim = clip_dim
        self.clip_embed = nn.Linear(clip_dim, self.width)

    def forward(self, x: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``embeddings``: ``[N, clip_dim]`` unit-norm CLIP vectors; zeros (or None) mean unconditional."""
        self._check_points(x)
        if embeddings is None:
            embeddings = x.new_zeros(len(x), self.clip_dim)
        # the model was trained on unit-norm vectors rescaled to unit variance per feature
        clip_embed = self.clip_embed(math.sqrt(embeddings.shape[1]) * embeddings.to(x.dtype))
        return self._forward_with_cond(x, [(clip_embed, self.token_cond), (self._embed_time(t), self.time_token_cond)])


class _GridEmbed(nn.Sequential):
    """LayerNorm then Linear over the CLIP patch grid (keys ``clip_embed.0.*``, ``clip_embed.1.*``)."""

    def __init__(self, grid_dim: int, width: int):
        super().__init__(nn.LayerNorm(grid_dim), nn.Linear(grid_dim, width))


class CLIPImageGridPointDiffusionTransformer(PointDiffusionTransformer):
    """Conditioned on the CLIP ViT-L/14 patch grid ``[N, 1024, 256]`` of the input image."""

    def __init__(
        self,
        *,
        n_ctx: int = 1024,
        cond_drop_prob: float = 0.0,
        grid_dim: int = CLIP_GRID_DIM,
        grid_size: int = CLIP_GRID_SIZE,
        **kwargs: Any,
    ):
        super().__init__(n_ctx=n_ctx, **kwargs)
        self.cond_drop_prob = cond_drop_prob
        self.grid_dim = grid_dim
        self.grid_tokens = grid_size**2
        self.clip_embed = _GridEmbed(grid_dim, self.width)

    def forward(self, x: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """``embeddings``: ``[N, grid_dim, grid_tokens]``; zeros mean unconditional."""
        self._check_points(x)
        clip_embed = self.clip_embed(embeddings.to(x.dtype).permute(0, 2, 1))
        return self._forward_with_cond(x, [(self._embed_time(t), self.time_token_cond), (clip_embed, True)])


class CLIPImageGridUpsamplePointDiffusionTransformer(PointDiffusionTransformer):
    """The upsampler: adds ``n_ctx`` points to a ``cond_ctx``-point cloud, optionally image-conditioned."""

    def __init__(
        self,
        *,
        n_ctx: int = 4096 - 1024,
        cond_ctx: int = 1024,
        cond_input_channels: int | None = None,
        channel_scales: Sequence[float] | None = None,
        channel_biases: Sequence[float] | None = None,
        cond_drop_prob: float = 0.0,
        grid_dim: int = CLIP_GRID_DIM,
        grid_size: int = CLIP_GRID_SIZE,
        **kwargs: Any,
    ):
        super().__init__(n_ctx=n_ctx, **kwargs)
        self.cond_ctx = cond_ctx
        self.cond_point_proj = nn.Linear(cond_input_channels or self.input_channels, self.width)
        # persistent buffers: the official checkpoint holds them
        self.register_buffer("channel_scales", _as_buffer(channel_scales))
        self.register_buffer("channel_biases", _as_buffer(channel_biases))
        self.cond_drop_prob = cond_drop_prob
        self.grid_dim = grid_dim
        self.grid_tokens = grid_size**2
        self.clip_embed = _GridEmbed(grid_dim, self.width)

    def _embed_low_res(self, low_res: torch.Tensor) -> torch.Tensor:
        """``low_res`` is in data space (xyz, RGB in 0..255); scale it as the diffusion does."""
        if self.channel_scales is not None:
            low_res = low_res * self.channel_scales[None, :, None]
        if self.channel_biases is not None:
            low_res = low_res + self.channel_biases[None, :, None]
        return self.cond_point_proj(low_res.permute(0, 2, 1))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, low_res: torch.Tensor, embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``low_res``: ``[N, C, cond_ctx]``; ``embeddings``: ``[N, grid_dim, grid_tokens]`` or None (zeros)."""
        self._check_points(x)
        if embeddings is None:
            embeddings = x.new_zeros(len(x), self.grid_dim, self.grid_tokens)
        low_res_embed = self._embed_low_res(low_res.to(x.dtype))
        clip_embed = self.clip_embed(embeddings.to(x.dtype).permute(0, 2, 1))
        conds = [(self._embed_time(t), self.time_token_cond), (clip_embed, True), (low_res_embed, True)]
        return self._forward_with_cond(x, conds)


def _as_buffer(values: Sequence[float] | None) -> torch.Tensor | None:
    return None if values is None else torch.tensor(list(values), dtype=torch.float32)


# ----------------------------------------------------------------------------- SDF model


class CrossAttentionPointCloudSDFModel(nn.Module):
    """Encodes a point cloud ``[N, 3, P]`` with a transformer; query points cross-attend to it for an SDF."""

    def __init__(
        self,
        *,
        n_ctx: int = 4096,
        width: int = 512,
        encoder_layers: int = 12,
        encoder_heads: int = 8,
        decoder_layers: int = 4,
        decoder_heads: int = 8,
        init_scale: float = 0.25,
    ):
        super().__init__()
        self.n_ctx = n_ctx  # the point count it was trained with; any count works (no positions)
        self.encoder_input_proj = nn.Linear(3, width)
        self.encoder = Transformer(width, encoder_layers, encoder_heads, init_scale)
        self.decoder_input_proj = nn.Linear(3, width)
        self.decoder = Perceiver(width, decoder_layers, decoder_heads, init_scale)
        self.ln_post = nn.LayerNorm(width)
        self.output_proj = nn.Linear(width, 1)

    def encode_point_clouds(self, point_clouds: torch.Tensor) -> torch.Tensor:
        """``[N, 3, P]`` -> latents ``[N, P, width]`` (no ln_pre, no ln_post)."""
        return self.encoder(self.encoder_input_proj(point_clouds.permute(0, 2, 1)))

    def predict_sdf(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Query points ``[N, 3, Q]`` -> signed distances ``[N, Q]``."""
        h = self.decoder(self.decoder_input_proj(x.permute(0, 2, 1)), latents)
        return self.output_proj(self.ln_post(h))[..., 0]

    def forward(
        self, x: torch.Tensor, point_clouds: torch.Tensor | None = None, latents: torch.Tensor | None = None
    ) -> torch.Tensor:
        if (point_clouds is None) == (latents is None):
            raise ValueError("pass exactly one of point_clouds and latents")
        if latents is None:
            latents = self.encode_point_clouds(point_clouds)
        return self.predict_sdf(x, latents)


MODEL_CLASSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        PointDiffusionTransformer,
        CLIPImagePointDiffusionTransformer,
        CLIPImageGridPointDiffusionTransformer,
        CLIPImageGridUpsamplePointDiffusionTransformer,
        CrossAttentionPointCloudSDFModel,
    )
}


def build_model(
    config: dict[str, Any], device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> nn.Module:
    """A model from an official config dict (``{"name": class name, **constructor kwargs}``), in eval mode.

    On the ``meta`` device nothing is allocated; use ``load_state_dict(..., assign=True)`` afterwards.
    """
    kwargs = dict(config)
    name = kwargs.pop("name")
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown Point-E model class {name!r}; known: {', '.join(MODEL_CLASSES)}")
    with torch.device(device):
        model = MODEL_CLASSES[name](**kwargs)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval().requires_grad_(False)
