"""The demo's picture: a held-out case (image, label, prediction) and the learned mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rep3d_nnunet.nnunet.adapter import read_checkpoint


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def demo_figure(dataset: Path, predictions: Path, checkpoint: Path, out: Path) -> Path:
    """Write a PNG: one held-out case's busiest slice (image / label / prediction), plus the learned
    LRBM mask of the block with the largest kernel: its fixed prior P and M on the same scale
    (central slices), and M's radial profile against P. Prints the mask's centre, minimum and maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rep3d_nnunet.analysis.masks import (draw_radial_profile, mask_colour_scale, mask_infos_from_state_dict,
                                             mask_stats)

    label_file = sorted((dataset / "labelsTs").iterdir())[0]
    case = label_file.name.split(".")[0]
    ending = label_file.name[len(case):]
    image = _read(dataset / "imagesTs" / f"{case}_0000{ending}").astype(np.float32)
    label = _read(label_file)
    pred = _read(predictions / label_file.name)
    z = int(np.argmax((label > 0).reshape(label.shape[0], -1).sum(1)))

    weights = read_checkpoint(checkpoint, required=("network_weights",))["network_weights"]
    masks = mask_infos_from_state_dict(weights)

    n_cols = 3 + (3 if masks else 0)
    fig, axes = plt.subplots(1, n_cols, figsize=(3.2 * n_cols, 3.4))
    n_labels = max(int(label.max()), int(pred.max()), 1)
    axes[0].imshow(image[z], cmap="gray")
    axes[0].set_title(f"{case}, slice {z}")
    for ax, seg, title in ((axes[1], label, "reference"), (axes[2], pred, "prediction (deployed)")):
        ax.imshow(image[z], cmap="gray")
        ax.imshow(np.ma.masked_equal(seg[z], 0), cmap="tab10", vmin=0, vmax=max(9, n_labels), alpha=0.6,
                  interpolation="nearest")
        ax.set_title(title)
    for ax in axes[:3]:
        ax.axis("off")
    if masks:
        info = max(masks, key=lambda i: int(np.prod(i.kernel_size)))
        m = info.mean_mask
        c = m.shape[0] // 2
        stats = mask_stats(info)
        # P and M on one scale: the prior's [0, 1] while M stays in it (the bounded masks do); a
        # diverging scale about 0 otherwise, so negative taps of the additive ablation stay visible
        cmap, vmin, vmax = mask_colour_scale(info.mask)
        axes[3].imshow(info.prior[c], cmap=cmap, vmin=vmin, vmax=vmax)
        axes[3].set_title(f"fixed prior P ({'x'.join(map(str, info.kernel_size))})", fontsize=9)
        im = axes[4].imshow(m[c], cmap=cmap, vmin=vmin, vmax=vmax)
        axes[4].set_title(f"learned M ({info.mode})\ncentre {stats['centre']:.3g}, range "
                          f"[{stats['min']:.3g}, {stats['max']:.3g}]", fontsize=9)
        fig.colorbar(im, ax=axes[4], fraction=0.046)
        for ax in axes[3:5]:
            ax.axis("off")
        draw_radial_profile(axes[5], info)
        axes[5].set_title("radial profile", fontsize=9)
        fig.text(0.99, 0.01, f"mask of {info.name}", ha="right", fontsize=7)
        print(f"learned mask of {info.name} ({info.mode}, kernel {'x'.join(map(str, info.kernel_size))}): "
              f"centre {stats['centre']:.4g}, min {stats['min']:.4g}, max {stats['max']:.4g}, "
              f"max |M - P| {stats['max_dev']:.3g}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
