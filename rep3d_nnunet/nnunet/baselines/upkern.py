"""UpKern (MedNeXt, Roy et al. 2023): initialise a large-kernel network from a trained small-kernel one.

Every weight of the small-kernel network is copied into the equivalent large-kernel
network (same configuration except the depthwise kernel size); kernels whose spatial
size differs are resampled by trilinear interpolation (PyTorch's default
``align_corners=False``, as the official ``upkern_load_weights``). With that
convention the centre tap of a k3 kernel lands exactly on the centre tap of the k5
kernel, and the k5 taps sample the k3 kernel stretched over the same extent.
"""
from __future__ import annotations

from typing import Dict, Mapping

import torch
import torch.nn.functional as F


class UpKernError(ValueError):
    """Two state dicts that UpKern cannot map onto each other; the message names the first mismatch."""


def resample_kernel(weight: torch.Tensor, spatial_size) -> torch.Tensor:
    """A conv weight ``(out, in/groups, *k)`` resampled trilinearly (bilinearly in 2D) to ``spatial_size``."""
    mode = {5: "trilinear", 4: "bilinear"}.get(weight.ndim)
    if mode is None:
        raise UpKernError(f"UpKern resamples 2D/3D conv kernels only, got a weight of shape {tuple(weight.shape)}")
    return F.interpolate(weight.float(), size=tuple(spatial_size), mode=mode, align_corners=False).to(weight.dtype)


def upkern_state_dict(target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]
                      ) -> Dict[str, torch.Tensor]:
    """The state dict for ``target``'s shapes built from ``source`` (the trained small-kernel network).

    Keys must match exactly; tensors of equal shape are copied, conv kernels that differ
    only in their spatial size are resampled; anything else raises ``UpKernError``.
    """
    missing, extra = sorted(set(target) - set(source)), sorted(set(source) - set(target))
    if missing or extra:
        raise UpKernError(f"UpKern needs the same network up to kernel size: keys only in the new network "
                          f"{missing[:5]}{'...' if len(missing) > 5 else ''}, only in the checkpoint "
                          f"{extra[:5]}{'...' if len(extra) > 5 else ''}")
    out = {}
    for key, t in target.items():
        s = source[key]
        if t.shape == s.shape:
            out[key] = s.detach().clone().to(t.dtype)
        elif t.ndim == s.ndim and t.ndim in (4, 5) and t.shape[:2] == s.shape[:2]:
            out[key] = resample_kernel(s.detach(), t.shape[2:])
        else:
            raise UpKernError(f"UpKern cannot map {key}: checkpoint {tuple(s.shape)} vs new network "
                              f"{tuple(t.shape)} (only the kernel's spatial size may differ: same MedNeXt size "
                              "S/B/M/L, same input channels and classes)")
    return out
