"""Effective receptive fields (ERF): |d (central output voxels) / d input|, aggregated over inputs.

The ERF of a feature map is the absolute gradient of its central voxel(s), summed
over channels, with respect to the input, summed over input channels and averaged
over N inputs (Luo et al. 2016; RepLKNet's figures). It is computed in ``eval()``
mode so BatchNorm uses running statistics and samples do not interact.

Radii: along each axis, the ERF is summed over the other two axes (a marginal
profile); the radius for a fraction q is the smallest half-width around the
profile's centroid that holds q of its mass. In voxels of the input grid, and in
millimetres when the voxel spacing is known.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
FRACTIONS = (0.5, 0.9, 0.99)
AXES = ("z", "y", "x")  # nnU-Net's array order after its transpose


def _first(out) -> torch.Tensor:
    # deep supervision / skip lists: take the first (highest-resolution) or last (deepest) as told by caller
    return out[0] if isinstance(out, (list, tuple)) else out


def network_output(model: nn.Module) -> FeatureFn:
    """The network's output (logits); with deep supervision on, its full-resolution head."""
    return lambda x: _first(model(x))


def deepest_encoder_feature(model: nn.Module) -> FeatureFn:
    """The last (deepest) feature map of ``model.encoder``.

    Works for dynamic-network-architectures' PlainConvUNet / ResidualEncoderUNet
    (their encoders return the list of skips) and for our Rep3D networks (one map
    per stage); pass your own ``FeatureFn`` for anything else.
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ValueError(f"{type(model).__name__} has no `.encoder`; pass a feature function "
                         "(x -> deepest feature map) to compute_erf instead")

    def feature(x: torch.Tensor) -> torch.Tensor:
        out = encoder(x)
        return out[-1] if isinstance(out, (list, tuple)) else out
    return feature


def module_output(model: nn.Module, name: str) -> FeatureFn:
    """The output of the submodule ``name`` (as in ``model.named_modules()``) while ``model`` runs.

    For networks whose deepest feature is not an encoder's last output, e.g. MONAI's
    MedNeXt (``bottleneck``). The whole model runs; the gradient flows from that output only.
    """
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"{type(model).__name__} has no submodule {name!r}; some of its modules: "
                         f"{', '.join(n for n in list(modules)[1:12])}, ...")
    module = modules[name]

    def feature(x: torch.Tensor) -> torch.Tensor:
        captured: List[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, i, out: captured.append(out))
        try:
            model(x)
        finally:
            handle.remove()
        out = captured[0]
        return out[-1] if isinstance(out, (list, tuple)) else out
    return feature


def deepest_feature(model: nn.Module) -> Optional[Tuple[str, FeatureFn]]:
    """(name, feature function) of the deepest encoder feature: ``model.encoder``'s last output, else
    the first submodule called ``bottleneck`` (MedNeXt); None if neither exists."""
    if hasattr(model, "encoder"):
        return "deepest encoder stage", deepest_encoder_feature(model)
    for name, _ in model.named_modules():
        if name.split(".")[-1] == "bottleneck":
            return f"bottleneck ({name})", module_output(model, name)
    return None


def central_slices(shape: Sequence[int]) -> Tuple[slice, ...]:
    """The central index along each axis: one for odd sizes, the two middle ones for even sizes."""
    return tuple(slice(n // 2, n // 2 + 1) if n % 2 else slice(n // 2 - 1, n // 2 + 1) for n in shape)


def compute_erf(feature_fn: FeatureFn, inputs: Iterable[torch.Tensor]) -> np.ndarray:
    """Mean over inputs of |grad of the central voxel(s) of feature_fn(x), summed over channels|.

    ``inputs``: tensors (B, C, *spatial); every sample counts once. Returns an array of
    the input's spatial shape (float64), summed over input channels. The caller
    puts the model in ``eval()`` (``erf_of_model`` does).
    """
    total: Optional[torch.Tensor] = None
    n = 0
    for x in inputs:
        x = x.detach().clone().requires_grad_(True)
        y = feature_fn(x)
        if y.dim() < 3:
            raise ValueError(f"the feature function must return (B, C, *spatial), got shape {tuple(y.shape)}")
        centre = y[(slice(None), slice(None)) + central_slices(y.shape[2:])]
        (grad,) = torch.autograd.grad(centre.sum(), x)
        contrib = grad.detach().abs().sum(dim=(0, 1)).double()
        total = contrib if total is None else total + contrib
        n += x.shape[0]
    if total is None:
        raise ValueError("compute_erf needs at least one input")
    return (total / n).cpu().numpy()


def erf_radii(erf: np.ndarray, fractions: Sequence[float] = FRACTIONS) -> np.ndarray:
    """Per axis, the half-width (voxels) around the marginal's centroid holding each fraction of the mass.

    Returns an array (ndim, len(fractions)). A uniform kernel of size k gives (k - 1) / 2
    at fraction 1.
    """
    erf = np.asarray(erf, dtype=np.float64)
    total = erf.sum()
    if not total > 0:
        raise ValueError("the ERF is zero everywhere: the output does not depend on the input")
    radii = np.zeros((erf.ndim, len(fractions)))
    for axis in range(erf.ndim):
        profile = erf.sum(axis=tuple(a for a in range(erf.ndim) if a != axis))
        idx = np.arange(profile.size)
        centroid = (profile * idx).sum() / total
        dist = np.abs(idx - centroid)
        order = np.argsort(dist, kind="stable")
        cum = np.cumsum(profile[order]) / total
        for j, q in enumerate(fractions):
            # tolerance: a fraction of exactly 1 must not fall off the end by rounding
            k = min(int(np.searchsorted(cum, q - 1e-9)), len(cum) - 1)
            radii[axis, j] = dist[order][k]
    return radii


def erf_centroid(erf: np.ndarray) -> Tuple[int, ...]:
    """The ERF's centre of mass, rounded to a voxel (a steadier slice position than the noisy peak)."""
    grids = np.meshgrid(*[np.arange(s) for s in erf.shape], indexing="ij")
    return tuple(int(round(float((g * erf).sum() / erf.sum()))) for g in grids)


@dataclass
class ERFResult:
    """One ERF map with its radii; ``spacing`` (mm per voxel, per axis) may be unknown."""

    name: str
    erf: np.ndarray
    radii_vox: np.ndarray  # (3, len(fractions))
    fractions: Tuple[float, ...] = FRACTIONS
    spacing: Optional[Tuple[float, ...]] = None

    @property
    def radii_mm(self) -> Optional[np.ndarray]:
        if self.spacing is None:
            return None
        return self.radii_vox * np.asarray(self.spacing, dtype=np.float64)[:, None]


def random_inputs(n: int, in_channels: int, size: Sequence[int], seed: int = 0,
                  batch_size: int = 1) -> List[torch.Tensor]:
    """N standard-normal inputs (nnU-Net normalises CT/MR to zero mean, unit variance)."""
    g = torch.Generator().manual_seed(seed)
    out, left = [], n
    while left > 0:
        b = min(batch_size, left)
        out.append(torch.randn(b, in_channels, *size, generator=g))
        left -= b
    return out


def erf_of_model(model: nn.Module, inputs: Sequence[torch.Tensor], spacing: Optional[Sequence[float]] = None,
                 feature_fns: Optional[Sequence[Tuple[str, FeatureFn]]] = None,
                 fractions: Sequence[float] = FRACTIONS) -> List[ERFResult]:
    """ERFs at the deepest encoder feature (see ``deepest_feature``) and at the output.

    ``feature_fns`` replaces the default pair with your own ``(name, x -> feature map)``,
    e.g. ``("stage 2", module_output(model, "encoder.stages.2"))``. The model is
    switched to ``eval()`` and restored afterwards.
    """
    if feature_fns is None:
        deepest = deepest_feature(model)
        feature_fns = ([deepest] if deepest else []) + [("output", network_output(model))]
    was_training = model.training
    model.eval()
    try:
        results = []
        for name, fn in feature_fns:
            erf = compute_erf(fn, inputs)
            results.append(ERFResult(name, erf, erf_radii(erf, fractions), tuple(fractions),
                                     tuple(float(s) for s in spacing) if spacing is not None else None))
        return results
    finally:
        model.train(was_training)


def erf_table(results: Sequence[ERFResult]) -> str:
    """A small terminal table: one row per (map, axis), radii in voxels (and mm)."""
    fr = results[0].fractions if results else FRACTIONS
    head = ["map", "axis"] + [f"r{round(q * 100):d} vox" for q in fr]
    if any(r.spacing is not None for r in results):
        head += [f"r{round(q * 100):d} mm" for q in fr]
    rows = []
    for r in results:
        mm = r.radii_mm
        for a in range(r.radii_vox.shape[0]):
            row = [r.name, AXES[a] if r.radii_vox.shape[0] == 3 else str(a)]
            row += [f"{v:.1f}" for v in r.radii_vox[a]]
            if len(head) > 2 + len(fr):
                row += [f"{v:.1f}" for v in mm[a]] if mm is not None else ["-"] * len(fr)
            rows.append(row)
    return format_table(head, rows)


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain aligned text columns (first columns left-aligned, numbers right-aligned)."""
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def plot_erf(results: Sequence[ERFResult], path: str, title: Optional[str] = None, floor: float = 1e-4,
             dpi: int = 80) -> str:
    """Three orthogonal slices through each ERF's centroid, log10 of ERF / max (floored), one row per map."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(9, 3 * len(results)), squeeze=False)
    for row, r in zip(axes, results):
        e = r.erf / r.erf.max()
        peak = erf_centroid(r.erf)
        sp = r.spacing or (1.0, 1.0, 1.0)
        views = [("axial (z = %d)" % peak[0], e[peak[0]], sp[1] / sp[2]),
                 ("coronal (y = %d)" % peak[1], e[:, peak[1]], sp[0] / sp[2]),
                 ("sagittal (x = %d)" % peak[2], e[:, :, peak[2]], sp[0] / sp[1])]
        for ax, (label, img, aspect) in zip(row, views):
            im = ax.imshow(np.log10(np.maximum(img, floor)), cmap="magma", vmin=np.log10(floor), vmax=0,
                           aspect=aspect, interpolation="nearest")
            ax.set_title(f"{r.name}\n{label}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        r90 = ", ".join(f"{AXES[a]} {v:.1f}" for a, v in enumerate(r.radii_vox[:, list(r.fractions).index(0.9)])) \
            if 0.9 in r.fractions else ""
        if r90:
            row[0].set_ylabel(f"r90 (vox): {r90}", fontsize=7)
        fig.colorbar(im, ax=list(row), shrink=0.8, label="log10 ERF / max")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
