"""What the masks of a Rep3D model look like: M beside the prior P, M - P, and M's radial profile.

For every ``ReparamDWConv3d`` with a mask (the learned modes 'lrbm', 'lrbm_power',
'lrbm_additive', and 'prior'), M is evaluated once (``rep3d_nnunet.mask``). Plain SGD
moves the effective kernel W (.) M at a per-tap rate proportional to M^2 (the
learning-rate field, drawn in the radial profile). The bounded modes keep 0 < M <= 1
with the centre at 1, so M is drawn on the prior's [0, 1] scale; a mask that leaves it
(the unbounded 'lrbm_additive' ablation, or an old checkpoint) is drawn on a diverging
scale centred at 0, so negative taps stay visible. A deployed model has folded W (.) M
into plain depthwise kernels: there is no mask left to show, and ``describe_no_masks``
says so.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from rep3d_nnunet.analysis.erf import format_table
from rep3d_nnunet.analysis.loading import (CHECKPOINT, load_checkpoint, load_trained_model,
                                           model_folder_of_checkpoint, state_dict_of)
from rep3d_nnunet.conv import ReparamDWConv3d
from rep3d_nnunet.mask import LEGACY_MODE, LEARNED_MODES, KernelMask, recorded_mode
from rep3d_nnunet.prior import distance_prior

DEPLOYED_MESSAGE = ("deployed model: its masks are folded into plain depthwise kernels (W * M was computed once "
                    "and stored; the generator and the prior were dropped), so there is no mask to show. "
                    "Run this on the training-form checkpoint (before reparameterize_model) instead.")
NO_MASK_MESSAGE = ("no masked large-kernel convolutions in this model (a stock nnU-Net / ResEnc network, a "
                   "plain large kernel (mask 'none') or CSLA): nothing to show.")


@dataclass
class MaskInfo:
    """One block's mask. ``mask``: (1 or C, kd, kh, kw); ``prior``: (kd, kh, kw)."""

    name: str
    mode: str
    mask: np.ndarray
    prior: np.ndarray
    beta: float = 1.0
    note: str = ""

    @property
    def kernel_size(self) -> Tuple[int, int, int]:
        return tuple(self.prior.shape)  # type: ignore[return-value]

    @property
    def mean_mask(self) -> np.ndarray:
        """The mask averaged over channels (it is shared by all channels unless per-channel)."""
        return self.mask.mean(axis=0)


@torch.no_grad()
def mask_of(km: KernelMask) -> Optional[np.ndarray]:
    """M as a (1 or C, kd, kh, kw) float64 array, or None for mode 'none'."""
    m = km()
    return None if m is None else m.detach().double().cpu().numpy()[:, 0]


def mask_infos(model: nn.Module) -> List[MaskInfo]:
    """A ``MaskInfo`` for every masked re-parameterised conv of ``model``, in module order."""
    infos = []
    for name, module in model.named_modules():
        if isinstance(module, ReparamDWConv3d) and module.mask.mode != "none":
            km = module.mask
            infos.append(MaskInfo(name or type(module).__name__, km.mode, mask_of(km),
                                  distance_prior(km.kernel_size, km.beta, torch.float64).numpy(), km.beta))
    return infos


def has_large_depthwise_conv(model: nn.Module, min_kernel: int = 5) -> bool:
    """True if ``model`` holds a depthwise 3D conv with a kernel of at least ``min_kernel`` along some axis."""
    return any(isinstance(m, nn.Conv3d) and m.groups == m.in_channels > 1 and max(m.kernel_size) >= min_kernel
               for m in model.modules())


def describe_no_masks(model: nn.Module) -> str:
    """Why a model has no mask to show: deployed (masks folded) or no masked convs at all."""
    deployed = has_large_depthwise_conv(model) and not any(isinstance(m, ReparamDWConv3d) for m in model.modules())
    return DEPLOYED_MESSAGE if deployed else NO_MASK_MESSAGE


_GEN_KEY = re.compile(r"^(?P<prefix>.*)mask\.generator\.conv1\.weight$")


def mask_infos_from_state_dict(state_dict: Dict[str, torch.Tensor], beta: float = 1.0) -> List[MaskInfo]:
    """LRBM masks rebuilt from weights alone (no network class needed).

    The mode is the checkpoint's record (``<prefix>mask._extra_state``); weights without
    one were trained by rep3d-nnunet <= 0.1, whose learned mask was the additive form.
    The prior is not stored (it is a function of kernel size and beta), so ``beta`` is
    assumed; 'prior'-mode masks hold no weights and cannot be found this way.
    """
    infos = []
    for key in state_dict:
        match = _GEN_KEY.match(key)
        if not match:
            continue
        p = match.group("prefix")
        weight = state_dict.get(p + "weight")
        if weight is None or weight.dim() != 5:
            continue
        gen = {k[len(p + "mask.generator."):]: v for k, v in state_dict.items() if k.startswith(p + "mask.generator.")}
        hidden, out = gen["conv1.weight"].shape[0], gen["conv2.weight"].shape[0]
        record = state_dict.get(p + "mask._extra_state")
        mode = LEGACY_MODE if record is None else recorded_mode(record)
        if mode not in LEARNED_MODES:
            raise ValueError(f"{p}mask: generator weights under mask mode {mode!r}, which has no generator: "
                             "a corrupt or hand-edited state dict")
        km = KernelMask(weight.shape[0], tuple(weight.shape[2:]), mode, beta, per_channel=out > 1,
                        hidden_channels=hidden)
        km.generator.load_state_dict(gen)
        note = f"from weights alone, beta assumed {beta}"
        if record is None:
            note += "; no mask-mode record: rep3d-nnunet <= 0.1's unbounded (additive) LRBM"
        infos.append(MaskInfo(p.rstrip(".") or "conv", mode, mask_of(km),
                              distance_prior(km.kernel_size, beta, torch.float64).numpy(), beta, note=note))
    return infos


def state_dict_looks_deployed(state_dict: Dict[str, torch.Tensor], min_kernel: int = 5) -> bool:
    """Large depthwise kernels (C, 1, k, k, k) but no mask generator weights: folded (or never masked)."""
    large_dw = any(v.dim() == 5 and v.shape[1] == 1 and max(v.shape[2:]) >= min_kernel
                   for k, v in state_dict.items() if k.endswith("weight"))
    return large_dw and not any(".mask." in k or k.startswith("mask.") for k in state_dict)


def masks_of_network(network: nn.Module) -> Tuple[List[MaskInfo], str]:
    """(mask infos, message): the message says why there is nothing to show when infos is empty."""
    infos = mask_infos(network)
    return infos, ("" if infos else describe_no_masks(network))


def masks_of_path(path: str, fold: Union[int, str, None] = None,
                  checkpoint_name: str = CHECKPOINT) -> Tuple[List[MaskInfo], str]:
    """(mask infos, message) for an nnU-Net model folder or a checkpoint file.

    A folder, or a checkpoint inside one (``<folder>/fold_N/<file>``), is rebuilt from its
    plans in training form (exact beta, fixed-prior masks too). A bare checkpoint, or
    one whose weights do not fit that training form (a deployed one), is read from its
    weights alone.
    """
    if os.path.isdir(path):
        return masks_of_network(load_trained_model(path, fold, checkpoint_name, form="training").network)
    folder = model_folder_of_checkpoint(path)
    fold_dir = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if folder is not None and fold_dir.startswith("fold_"):
        f = fold_dir[len("fold_"):]
        try:
            model = load_trained_model(folder, int(f) if f.isdigit() else f, os.path.basename(path), form="training")
            return masks_of_network(model.network)
        except (RuntimeError, KeyError):  # the weights do not fit the training form the plans describe
            pass
    state_dict = state_dict_of(load_checkpoint(path))
    infos = mask_infos_from_state_dict(state_dict)
    if infos:
        message = "masks rebuilt from the weights alone (beta assumed 1.0; fixed-prior masks are not listed)"
        if any(i.mode == LEGACY_MODE and "no mask-mode record" in i.note for i in infos):
            message += ("; no mask-mode record: trained by rep3d-nnunet <= 0.1, drawn as its unbounded "
                        "(additive) LRBM, M = P + f(P)")
        return infos, message
    return [], DEPLOYED_MESSAGE if state_dict_looks_deployed(state_dict) else NO_MASK_MESSAGE


def radial_profile(volume: np.ndarray, bin_width: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin a kernel-shaped volume by Euclidean tap distance from the centre: (centres, mean, min, max)."""
    axes = [np.arange(s) - s // 2 for s in volume.shape]
    dist = np.sqrt(sum(g ** 2 for g in np.meshgrid(*axes, indexing="ij")))
    bins = np.round(dist / bin_width).astype(int)
    ids = np.unique(bins)
    mean = np.array([volume[bins == b].mean() for b in ids])
    low = np.array([volume[bins == b].min() for b in ids])
    high = np.array([volume[bins == b].max() for b in ids])
    return ids * bin_width, mean, low, high


def mask_stats(info: MaskInfo) -> Dict[str, float]:
    """Numbers for the table: M at the centre and at the face centres (edge), M's minimum and maximum
    over all taps and channels, the M^2 edge/centre learning-rate ratio, the largest deviation
    from the prior, and the smallest M / P (a tap whose mask died has M / P -> 0)."""
    m = info.mean_mask
    c = tuple(s // 2 for s in m.shape)
    edge = np.mean([m[(0,) + c[1:]], m[(-1,) + c[1:]], m[c[0], 0, c[2]], m[c[0], -1, c[2]],
                    m[c[:2] + (0,)], m[c[:2] + (-1,)]])
    centre = m[c]
    return {"centre": float(centre), "edge": float(edge), "min": float(info.mask.min()),
            "max": float(info.mask.max()),
            "lr_ratio": float(edge ** 2 / centre ** 2) if centre != 0 else float("nan"),
            "max_dev": float(np.abs(info.mask - info.prior[None]).max()),
            "min_ratio": float((info.mask / info.prior[None]).min())}


def mask_table(infos: Sequence[MaskInfo]) -> str:
    """One row per block: mode, kernel, M centre / edge / min / max, M^2 edge:centre, max |M - P|, min M/P."""
    head = ["block", "mode", "kernel", "M centre", "M edge", "M min", "M max", "M^2 edge/centre", "max |M-P|",
            "min M/P"]
    rows = []
    for i in infos:
        s = mask_stats(i)
        rows.append([i.name, i.mode, "x".join(map(str, i.kernel_size)), f"{s['centre']:.3f}", f"{s['edge']:.3f}",
                     f"{s['min']:.3g}", f"{s['max']:.3g}", f"{s['lr_ratio']:.4f}", f"{s['max_dev']:.2e}",
                     f"{s['min_ratio']:.3g}"])
    return format_table(head, rows)


def mask_colour_scale(mask: np.ndarray) -> Tuple[str, float, float]:
    """(colormap, vmin, vmax) for drawing M: the prior's [0, 1] scale (viridis) while M stays in it, else a
    diverging scale symmetric about 0 (negative taps blue, positive red) covering all of M."""
    low, high = float(mask.min()), float(mask.max())
    if low >= 0 and high <= 1 + 1e-6:
        return "viridis", 0.0, 1.0
    lim = max(abs(low), abs(high), 1.0)
    return "RdBu_r", -lim, lim


def draw_radial_profile(ax, info: MaskInfo) -> None:
    """M per distance shell (mean, min-max band), M^2 (the SGD learning-rate field) and the prior P."""
    m = info.mean_mask
    r, mean, low, high = radial_profile(m)
    ax.fill_between(r, low, high, alpha=0.3, label="M (min-max per shell)")
    ax.plot(r, mean, "o-", ms=3, label="M (mean per shell)")
    ax.plot(r, radial_profile(m ** 2)[1], "s-", ms=2, lw=0.8, label="M² (SGD lr field)")
    # the prior binned like M, so an unchanged mask lies exactly on it
    ax.plot(r, radial_profile(info.prior)[1], "k--", lw=1, label=f"prior P (beta={info.beta:g})")
    if low.min() < 0:
        ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("distance from centre tap (taps)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)


def plot_masks(infos: Sequence[MaskInfo], path: str, title: Optional[str] = None, dpi: int = 80) -> str:
    """One row per block: central axial slice of P and of M on the same scale, M - P, and the radial profile.

    M shares the prior's [0, 1] colour scale while it stays in it (every bounded mode does);
    otherwise both are drawn on a diverging scale about 0 that shows negative taps.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not infos:
        raise ValueError("no masks to plot")
    fig, axes = plt.subplots(len(infos), 4, figsize=(12, 2.8 * len(infos)), squeeze=False)
    for row, info in zip(axes, infos):
        m = info.mean_mask
        z = m.shape[0] // 2
        dev = m - info.prior
        cmap, vmin, vmax = mask_colour_scale(info.mask)
        # a floor, so float rounding (M == P at initialisation) shows as flat, not as noise
        lim = max(float(np.abs(dev).max()), 1e-3)
        s = mask_stats(info)
        panels = [(f"prior P (beta={info.beta:g})", info.prior[z], cmap, vmin, vmax),
                  (f"M ({info.mode}): centre {s['centre']:.3g}, min {s['min']:.3g}, max {s['max']:.3g}", m[z],
                   cmap, vmin, vmax),
                  (f"M - P (max |M-P| {s['max_dev']:.2g})", dev[z], "coolwarm", -lim, lim)]
        for ax, (label, img, cm, lo, hi) in zip(row[:3], panels):
            im = ax.imshow(img, cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(f"{info.name}\n{label}, central slice", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
        draw_radial_profile(row[3], info)
        row[3].set_title(f"{info.mode}, kernel {'x'.join(map(str, info.kernel_size))}", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()) if title else None)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
