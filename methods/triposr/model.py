"""TripoSR's network (Tochilkin et al. 2024), written from the paper and the official code's structure.

Parameter names and shapes equal the official ``tsr.system.TSR`` state_dict, so the released
``model.ckpt`` loads with ``strict=True``:

- ``image_tokenizer.model``: transformers' ``ViTModel`` (DINO ViT-B/16). transformers 5 names its layers
  differently from 4.35 (the release the official code pins); state_dict hooks translate, so the module
  saves and loads the official names. Position embeddings are interpolated as transformers 4.35 did.
- ``tokenizer.embeddings``: the learned triplane tokens (3, C, P, P).
- ``backbone``: a 1-D transformer over the 3 P^2 triplane tokens with cross-attention to the image tokens.
- ``post_processor.upsample``: a ConvTranspose2d (x2) shared by the three planes.
- ``decoder.layers``: the NeRF MLP (density + colour) on concatenated plane features.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from methods.triposr.config import TripoSRConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# transformers 5 ViT names -> transformers 4.35 names (the official checkpoint's)
_VIT_TO_OFFICIAL = (
    (re.compile(r"^layers\.(\d+)\.attention\.q_proj\."), r"encoder.layer.\1.attention.attention.query."),
    (re.compile(r"^layers\.(\d+)\.attention\.k_proj\."), r"encoder.layer.\1.attention.attention.key."),
    (re.compile(r"^layers\.(\d+)\.attention\.v_proj\."), r"encoder.layer.\1.attention.attention.value."),
    (re.compile(r"^layers\.(\d+)\.attention\.o_proj\."), r"encoder.layer.\1.attention.output.dense."),
    (re.compile(r"^layers\.(\d+)\.mlp\.fc1\."), r"encoder.layer.\1.intermediate.dense."),
    (re.compile(r"^layers\.(\d+)\.mlp\.fc2\."), r"encoder.layer.\1.output.dense."),
    (re.compile(r"^layers\.(\d+)\."), r"encoder.layer.\1."),
)
_OFFICIAL_TO_VIT = (
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.query\."), r"layers.\1.attention.q_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.key\."), r"layers.\1.attention.k_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.value\."), r"layers.\1.attention.v_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.output\.dense\."), r"layers.\1.attention.o_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.intermediate\.dense\."), r"layers.\1.mlp.fc1."),
    (re.compile(r"^encoder\.layer\.(\d+)\.output\.dense\."), r"layers.\1.mlp.fc2."),
    (re.compile(r"^encoder\.layer\.(\d+)\."), r"layers.\1."),
)


def _rename(name: str, rules) -> str:
    for pattern, repl in rules:
        new, n = pattern.subn(repl, name)
        if n:
            return new
    return name


def _rename_prefixed(state_dict: dict, prefix: str, rules) -> None:
    """Rename the keys under ``prefix`` in place, keeping their order."""
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        if key.startswith(prefix):
            key = prefix + _rename(key[len(prefix) :], rules)
        state_dict[key] = value


def interpolate_pos_embed_435(pos_embed: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """ViT position embeddings for an ``height`` x ``width`` input, as transformers 4.35 computed them.

    4.35 passes ``scale_factor=((h0 + 0.1) / sqrt(N), ...)`` to a bicubic ``F.interpolate``; PyTorch uses that
    factor for the sampling positions, which differs from today's ``size=(h0, w0)`` (up to 0.12 here).
    """
    num_positions = pos_embed.shape[1] - 1
    h0, w0 = height // patch, width // patch
    if h0 * w0 == num_positions and height == width:
        return pos_embed
    side = int(math.sqrt(num_positions))
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = ((h0 + 0.1) / math.sqrt(num_positions), (w0 + 0.1) / math.sqrt(num_positions))
    grid = F.interpolate(grid.float(), scale_factor=scale, mode="bicubic", align_corners=False).to(pos_embed.dtype)
    if grid.shape[-2:] != (h0, w0):
        raise ValueError(f"position grid {tuple(grid.shape[-2:])} does not match the patch grid {(h0, w0)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, dim)
    return torch.cat([pos_embed[:, :1], grid], dim=1)


class DINOImageTokenizer(nn.Module):
    """DINO ViT image tokens: [CLS; patches] after the final LayerNorm, (B, 1 + Np, C)."""

    def __init__(self, vit_config: dict):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        config = ViTConfig(**{k: v for k, v in vit_config.items() if k not in ("architectures", "torch_dtype")})
        config._attn_implementation = "sdpa"
        self.model = ViTModel(config, add_pooling_layer=True)
        self.patch_size = config.patch_size
        self.register_buffer("image_mean", torch.empty(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.empty(1, 3, 1, 1), persistent=False)
        self.reset_buffers()
        self.register_state_dict_post_hook(_vit_state_dict_hook)
        self.register_load_state_dict_pre_hook(_vit_load_hook)

    def reset_buffers(self) -> None:
        """ImageNet mean/std (not in the state_dict; set again after loading onto meta-built modules)."""
        device = "cpu" if self.image_mean.is_meta else self.image_mean.device
        self.image_mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.image_std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings with CLS and interpolated position embeddings; ``images`` (B, 3, H, W) in [0, 1]."""
        emb = self.model.embeddings
        x = (images - self.image_mean.to(images.dtype)) / self.image_std.to(images.dtype)
        patches = emb.patch_embeddings.projection(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([emb.cls_token.expand(len(x), -1, -1), patches], dim=1)
        height, width = images.shape[-2:]
        return tokens + interpolate_pos_embed_435(emb.position_embeddings, height, width, self.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(images)
        for layer in self.model.layers:
            hidden = layer(hidden, None)
        return self.model.layernorm(hidden)


def _vit_state_dict_hook(module, state_dict, prefix, local_metadata) -> None:
    _rename_prefixed(state_dict, prefix + "model.", _VIT_TO_OFFICIAL)


def _vit_load_hook(module, state_dict, prefix, *args) -> None:
    _rename_prefixed(state_dict, prefix + "model.", _OFFICIAL_TO_VIT)


class TriplaneTokens(nn.Module):
    """The learned triplane tokens; token order is plane, row, column."""

    def __init__(self, plane_size: int, num_channels: int):
        super().__init__()
        self.plane_size = plane_size
        self.embeddings = nn.Parameter(torch.randn(3, num_channels, plane_size, plane_size) / math.sqrt(num_channels))

    def forward(self, batch_size: int) -> torch.Tensor:
        tokens = self.embeddings.permute(1, 0, 2, 3).reshape(1, self.embeddings.shape[1], -1)
        return tokens.expand(batch_size, -1, -1)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, C, 3 P^2) -> (B, 3, C, P, P)."""
        b, c, _ = tokens.shape
        return tokens.reshape(b, c, 3, self.plane_size, self.plane_size).permute(0, 2, 1, 3, 4)


class Attention(nn.Module):
    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b = x.shape[0]
        q, k, v = (
            t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
            for t in (self.to_q(x), self.to_k(context), self.to_v(context))
        )
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, -1, q.shape[1] * q.shape[-1]))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        if torch.is_grad_enabled():
            return value * F.gelu(gate)
        return F.gelu(gate).mul_(value)  # inference: one (N, 4C) buffer fewer, the same values


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the image tokens, GEGLU feed-forward; each residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        if torch.is_grad_enabled():
            x = x + self.attn2(self.norm2(x), context)
            return x + self.ff(self.norm3(x))
        # inference: residuals added in place into the block's own sum (the same values, fewer big buffers)
        x += self.attn2(self.norm2(x), context)
        x += self.ff(self.norm3(x))
        return x


class Transformer1D(nn.Module):
    """GroupNorm, proj_in, blocks, proj_out, plus the input: (B, C, N) tokens -> (B, C, N)."""

    def __init__(self, config: TripoSRConfig):
        super().__init__()
        inner = config.inner_dim
        self.norm = nn.GroupNorm(config.norm_num_groups, config.num_channels, eps=1e-6)
        self.proj_in = nn.Linear(config.num_channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, config.num_attention_heads, config.attention_head_dim, config.cross_attention_dim)
            for _ in range(config.num_layers)
        )
        self.proj_out = nn.Linear(inner, config.num_channels)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(self.norm(tokens).transpose(1, 2))
        for block in self.transformer_blocks:
            x = block(x, context)
        return self.proj_out(x).transpose(1, 2) + tokens


class TriplaneUpsampler(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """(B, 3, Ci, P, P) -> (B, 3, Co, 2P, 2P)."""
        b = planes.shape[0]
        out = self.upsample(planes.flatten(0, 1))
        return out.view(b, 3, *out.shape[1:])


class NeRFMLP(nn.Module):
    """Linear/activation stack; output channel 0 is raw density, 1..3 raw colour."""

    def __init__(self, in_channels: int, neurons: int, hidden_layers: int, activation: str):
        super().__init__()
        act = {"silu": nn.SiLU, "relu": nn.ReLU}[activation]
        layers: list[nn.Module] = [nn.Linear(in_channels, neurons), act()]
        for _ in range(hidden_layers - 1):
            layers += [nn.Linear(neurons, neurons), act()]
        layers.append(nn.Linear(neurons, 4))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def density_activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "exp":
        return torch.exp(x)
    if name == "relu":
        return F.relu(x)
    if name == "softplus":
        return F.softplus(x)
    return torch.sigmoid(x)


class TripoSR(nn.Module):
    """Image -> triplane scene codes, and the triplane NeRF queried at points."""

    def __init__(self, config: TripoSRConfig):
        super().__init__()
        self.config = config
        self.image_tokenizer = DINOImageTokenizer(config.vit)
        self.tokenizer = TriplaneTokens(config.plane_size, config.num_channels)
        self.backbone = Transformer1D(config)
        self.post_processor = TriplaneUpsampler(config.num_channels, config.triplane_channels)
        self.decoder = NeRFMLP(
            config.decoder_in_channels, config.decoder_neurons, config.decoder_hidden_layers, config.decoder_activation
        )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) float [0, 1] -> (B, 3, S, S): bilinear with antialiasing, aspect not kept (as official)."""
        size = self.config.cond_image_size
        x = images.permute(0, 3, 1, 2).float()  # antialiased resize has no float16 kernel on every device
        return F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 1 + Np, C), in the network's dtype."""
        dtype = self.image_tokenizer.model.embeddings.cls_token.dtype
        return self.image_tokenizer(images.to(dtype))

    def backbone_tokens(self, image_tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer(image_tokens.shape[0]).to(image_tokens.dtype)
        return self.backbone(tokens, image_tokens)

    def scene_codes_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.post_processor(self.tokenizer.detokenize(tokens))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) float [0, 1] images -> scene codes (B, 3, C, 2P, 2P); planes xy, xz, yz."""
        tokens = self.backbone_tokens(self.image_tokens(self.preprocess(images)))
        return self.scene_codes_from_tokens(tokens)

    def plane_features(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Bilinear samples of the three planes (3, C, H, W) at world points (N, 3) -> (N, 3C), zero outside."""
        r = self.config.radius
        uv = (points + r) / (2 * r) * 2 - 1  # the official scale_tensor, step for step (bit-equal samples)
        grids = torch.stack([uv[:, [0, 1]], uv[:, [0, 2]], uv[:, [1, 2]]])[:, None].to(planes.dtype)
        out = F.grid_sample(planes, grids, mode="bilinear", align_corners=False, padding_mode="zeros")
        return out[:, :, 0].permute(2, 0, 1).reshape(points.shape[0], -1)

    def query(self, planes: torch.Tensor, points: torch.Tensor, chunk_size: int = 0) -> dict[str, torch.Tensor]:
        """Density (activated) and colour at world points (N, 3) for one scene's planes; chunked when asked."""
        n = points.shape[0]
        step = chunk_size if chunk_size > 0 else max(n, 1)
        raw = torch.cat([self._decode(planes, points[i : i + step]) for i in range(0, n, step)]).float()
        density = density_activation(self.config.density_activation, raw[:, :1] + self.config.density_bias)
        color = torch.sigmoid(raw[:, 1:])
        return {"density_raw": raw[:, :1], "density": density, "features": raw[:, 1:], "color": color}

    def _decode(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        features = self.plane_features(planes, points)
        return self.decoder(features.to(self.decoder.layers[0].weight.dtype))

    def density(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Activated density only, (N,) float32, at world points (N, 3)."""
        raw = self._decode(planes, points)[:, 0].float()
        return density_activation(self.config.density_activation, raw + self.config.density_bias)

    @torch.inference_mode()
    def grid_density(self, planes: torch.Tensor, axis: torch.Tensor, chunk_size: int = 0) -> torch.Tensor:
        """Activated density on the grid ``axis`` x ``axis`` x ``axis``, (R, R, R) float32, [i, j, k] = (x_i, y_j, z_k).

        The same values as :meth:`density` at those points, computed with the grid's structure: each plane is
        sampled once per (row, column) of its two axes (3 R^2 samples instead of 3 R^3), and the decoder's first
        Linear layer, being linear, is applied to each plane's features once (W [f_xy; f_xz; f_yz] + b =
        W_xy f_xy + W_xz f_xz + W_yz f_yz + b), so a point costs three additions there instead of a
        (3C x neurons) product. Only the density output row of the last layer is computed. The partial
        sums change float32 rounding only (about 1e-7 relative). ``chunk_size`` bounds the points per pass.
        """
        r, res = self.config.radius, axis.shape[0]
        layers = list(self.decoder.layers)
        first, last = layers[0], layers[-1]
        dtype = first.weight.dtype
        uv = (axis.to(planes.device, planes.dtype) + r) / (2 * r) * 2 - 1  # as plane_features does per coordinate
        grid = torch.stack(torch.meshgrid(uv, uv, indexing="ij"), dim=-1)  # [a, b] = (u = uv_a, v = uv_b)
        sampled = F.grid_sample(planes, grid.expand(3, -1, -1, -1), mode="bilinear", align_corners=False)
        channels = planes.shape[1]
        weights = first.weight.split(channels, dim=1)  # the concatenation order: xy, xz, yz
        p_xy, p_xz, p_yz = (
            sampled[p].permute(1, 2, 0).to(dtype) @ weights[p].T for p in range(3)
        )  # [i, j], [i, k], [j, k]: (R, R, neurons)
        p_xy = (p_xy + first.bias).reshape(res * res, -1)
        rows_per_pass = max(1, chunk_size // res) if chunk_size > 0 else res * res
        out = torch.empty(res * res, res, dtype=torch.float32, device=planes.device)
        for start in range(0, res * res, rows_per_pass):
            stop = min(start + rows_per_pass, res * res)
            rows = torch.arange(start, stop, device=planes.device)
            h = p_xz.index_select(0, rows // res)  # rows (i, j), all k: (n, R, neurons)
            h += p_yz.index_select(0, rows % res)
            h += p_xy[start:stop, None]
            h = h.reshape(-1, h.shape[-1])
            for layer in layers[1:-1]:
                if isinstance(layer, nn.SiLU):
                    h = F.silu(h, inplace=True)
                elif isinstance(layer, nn.ReLU):
                    h = h.relu_()
                else:
                    h = layer(h)
            raw = F.linear(h, last.weight[:1], last.bias[:1]).float()
            out[start:stop] = raw.view(stop - start, res)
        activated = density_activation(self.config.density_activation, out + self.config.density_bias)
        return activated.view(res, res, res)


def official_state_dict_keys(model: TripoSR) -> OrderedDict:
    """Key -> shape of the model's state_dict (official names), e.g. to compare with a manifest."""
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())
