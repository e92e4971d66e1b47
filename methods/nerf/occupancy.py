"""An occupancy grid over [-1, 1]^3: which cells may hold matter, so the renderer skips the rest.

Cells are marked from a per-cell density bound: exact for the dense density grid
(:meth:`methods.nerf.field.DensityGrid.cell_max`), or estimated by sampling any density function
(:func:`sample_cell_density`, with an exponential moving average as in Instant-NGP) for fields
that DreamFusion / Dream Fields bring.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class OccupancyGrid:
    """A boolean grid of ``resolution^3`` cells indexed [x, y, z], and the bounding box of its occupied cells."""

    def __init__(self, resolution: int, device: str | torch.device = "cpu"):
        self.resolution = resolution
        self.occupied = torch.ones(resolution, resolution, resolution, dtype=torch.bool, device=device)
        self.density: torch.Tensor | None = None  # the EMA of sampled densities (sampled updates only)
        self.bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], device=device)

    @property
    def fraction(self) -> float:
        return float(self.occupied.float().mean())

    def set_from_density(self, cell_density: torch.Tensor, step: float, alpha_threshold: float = 1e-3) -> None:
        """Occupied where a ``step``-long stretch at the cell's densest point is more opaque than the threshold."""
        sigma_min = -torch.log1p(torch.tensor(-alpha_threshold)).item() / step
        if cell_density.shape[0] != self.resolution:
            self.resolution = cell_density.shape[0]
        self.occupied = cell_density > sigma_min
        self._update_bbox()

    def intersect(self, mask: torch.Tensor) -> None:
        """Keep only cells also set in ``mask`` (e.g. a visual hull), resampled to this resolution."""
        if mask.shape[0] != self.resolution:
            mask = (
                torch.nn.functional.interpolate(
                    mask[None, None].float(), size=(self.resolution,) * 3, mode="trilinear"
                )[0, 0]
                > 0
            )
        self.occupied &= mask.to(self.occupied.device)
        self._update_bbox()

    def _update_bbox(self) -> None:
        idx = self.occupied.nonzero()
        device = self.occupied.device
        if len(idx) == 0:
            self.bbox = torch.zeros(2, 3, device=device)
            return
        cell = 2.0 / self.resolution
        lo = idx.min(0).values.float() * cell - 1.0
        hi = (idx.max(0).values.float() + 1.0) * cell - 1.0
        self.bbox = torch.stack([lo - cell, hi + cell]).clamp(-1.0, 1.0)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Whether the points ``x`` (..., 3) lie in occupied cells (points outside the cube are not)."""
        g = self.resolution
        inside = (x.abs() <= 1.0).all(-1)
        ijk = ((x + 1.0) * (0.5 * g)).long().clamp(0, g - 1)
        flat = (ijk[..., 0] * g + ijk[..., 1]) * g + ijk[..., 2]
        return self.occupied.view(-1)[flat] & inside

    @torch.no_grad()
    def update_sampled(
        self,
        density_fn: Callable[[torch.Tensor], torch.Tensor],
        step: float,
        alpha_threshold: float = 1e-3,
        decay: float = 0.95,
        chunk: int = 1 << 18,
    ) -> None:
        """Estimate each cell's density at a jittered point and keep a decaying maximum (Instant-NGP's update)."""
        g, device = self.resolution, self.occupied.device
        axis = torch.arange(g, device=device, dtype=torch.float32)
        ijk = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3)
        x = (ijk + torch.rand_like(ijk)) * (2.0 / g) - 1.0
        sampled = torch.cat([density_fn(x[i : i + chunk]) for i in range(0, len(x), chunk)]).view(g, g, g)
        self.density = sampled if self.density is None else torch.maximum(self.density * decay, sampled)
        self.set_from_density(self.density, step, alpha_threshold)


def sample_cell_density(density_fn: Callable[[torch.Tensor], torch.Tensor], resolution: int, device="cpu"):
    """Density at the centre of each cell of a ``resolution^3`` grid over [-1, 1]^3, indexed [x, y, z]."""
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
    x = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).view(-1, 3)
    with torch.no_grad():
        out = torch.cat([density_fn(x[i : i + (1 << 18)]) for i in range(0, len(x), 1 << 18)])
    return out.view(resolution, resolution, resolution)
