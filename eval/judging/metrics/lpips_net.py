"""The LPIPS v0.1 network (Zhang et al. 2018) without torchvision, and loading its weights.

Parameter names follow the ``lpips`` package (``net.sliceK.I.*``, ``linK.model.1.weight``), so its
files load as they are. Inputs are N x 3 x H x W in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

LPIPS_NETS = {
    # channels of the five tapped layers, and where each slice ends in torchvision's ``features``
    "vgg": ((64, 128, 256, 512, 512), (4, 9, 16, 23, 30)),
    "alex": ((64, 192, 384, 256, 256), (2, 5, 8, 10, 12)),
}
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def trunk_layers(net: str) -> list[nn.Module]:
    """torchvision's ``vgg16().features`` / ``alexnet().features`` layer list (indices match its keys)."""
    if net == "vgg":
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
                c_in = int(v)
        return layers
    if net == "alex":
        return [
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        ]
    raise ValueError(f"LPIPS net must be one of {', '.join(LPIPS_NETS)}, got {net!r}")


class Slices(nn.Module):
    """The trunk cut into five slices; ``forward`` returns each slice's output."""

    def __init__(self, net: str) -> None:
        super().__init__()
        layers = trunk_layers(net)
        start = 0
        self.count = len(LPIPS_NETS[net][1])
        for k, end in enumerate(LPIPS_NETS[net][1], start=1):
            self.add_module(f"slice{k}", nn.Sequential())
            for i in range(start, end):
                getattr(self, f"slice{k}").add_module(str(i), layers[i])
            start = end

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for k in range(1, self.count + 1):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


class LinearLayer(nn.Module):
    """A 1x1 convolution to one channel (after dropout, inactive in eval mode)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))
        with torch.no_grad():  # trained LPIPS weights are non-negative (clamped in training): so are random ones
            self.model[1].weight.abs_()


class LPIPS(nn.Module):
    """LPIPS v0.1: scaled input, trunk features unit-normalised per pixel, learned weighted squared differences."""

    def __init__(self, net: str = "vgg") -> None:
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net must be one of {', '.join(LPIPS_NETS)}, got {net!r}")
        self.kind = net
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = Slices(net)
        for k, c in enumerate(LPIPS_NETS[net][0]):
            self.add_module(f"lin{k}", LinearLayer(c))

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        f0 = self.net((x0 - self.shift) / self.scale)
        f1 = self.net((x1 - self.shift) / self.scale)
        total = torch.zeros(())
        for k, (a, b) in enumerate(zip(f0, f1, strict=True)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            d = getattr(self, f"lin{k}").model((a - b) ** 2)
            if spatial:
                d = nn.functional.interpolate(d, size=x0.shape[2:], mode="bilinear", align_corners=False)
            else:
                d = d.mean(dim=(2, 3), keepdim=True)
            total = total + d
        return total


def build_lpips(net: str = "vgg") -> LPIPS:
    """LPIPS with random weights (tests and timing only: it measures nothing perceptual)."""
    return LPIPS(net).eval()


def lpips_state_dict(raw: dict[str, Any], net: str = "vgg") -> dict[str, Any]:
    """Map checkpoint keys to ours: torchvision trunks (``features.I.*``), the ``lpips`` package's
    full model (``net.sliceK.I.*`` and ``linK.model.1.weight`` or ``lins.K.model.1.weight``) and its
    linear-layer files. Other keys (classifier, scaling constants) are dropped."""
    ends = LPIPS_NETS[net][1]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) == 3 and parts[1].isdigit():
            i = int(parts[1])
            k = next((n for n, end in enumerate(ends, start=1) if i < end), None)
            if k is not None:
                out[f"net.slice{k}.{i}.{parts[2]}"] = value
        elif parts[0] == "net" and len(parts) > 1 and parts[1].startswith("slice"):
            out[key] = value
        elif parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[-1] == "weight":
            out[f"{parts[0]}.model.1.weight"] = value
        elif parts[0] == "lins" and len(parts) > 1 and parts[-1] == "weight":
            out[f"lin{parts[1]}.model.1.weight"] = value
    return out


def load_lpips(paths: list[str | Path] | str | Path, net: str = "vgg") -> LPIPS:
    """LPIPS with weights from one or more state-dict files (trunk + linear layers, or one full file).

    Every parameter must be covered: partial weights would give a number that looks like LPIPS and is not.
    """
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    model = build_lpips(net)
    merged: dict[str, Any] = {}
    for path in files:
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise OSError(f"cannot read LPIPS weights {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise OSError(f"{path} is not a state dict")
        merged.update(lpips_state_dict(raw.get("state_dict", raw), net))
    expected = {k for k in model.state_dict() if k not in ("shift", "scale")}
    missing = sorted(expected - set(merged))
    if missing:
        raise OSError(f"LPIPS weights are incomplete: {len(missing)} tensors missing, e.g. {', '.join(missing[:3])}")
    model.load_state_dict(merged, strict=False)
    return model
