"""Optimiser groups for LRBM: the mask generators train at a scaled learning rate, without weight decay.

Why a group of their own: the BatchNorm after every large-kernel conv leaves the
block's output invariant to the scale of W (.) M, so no gradient holds the mask's
size; the generator's last conv has thousands of weights, and at the network's
learning rate Adam moves each by about lr per step. A generator learning rate of
``lr * generator_lr_scale`` (about 1/fan-in of the last conv) keeps the mask a
slowly learned bias. Weight decay would pull the generator towards M == P for no
reason tied to the data, so it is off for that group.

``PolyLRSchedulerGroups`` is nnU-Net's poly schedule that keeps each group's ratio:
nnU-Net's ``PolyLRScheduler`` writes one lr into every group.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from torch import nn

LR_SCALE_KEY = "lr_scale"


def generator_parameters(module: nn.Module) -> List[nn.Parameter]:
    """All parameters of the LRBM mask generators inside ``module`` (each once, in module order)."""
    from rep3d_nnunet.mask import LRBMGenerator  # local: mask imports ops, keep this module light

    seen, params = set(), []
    for sub in module.modules():
        if isinstance(sub, LRBMGenerator):
            for p in sub.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def param_groups(network: nn.Module, lr: float, weight_decay: float,
                 generator_lr_scale: float = 0.01) -> List[Dict]:
    """Optimiser param groups: every other parameter first, then the LRBM generators (if any).

    The main group has ``lr`` and ``weight_decay`` (scale 1); the generator group has
    ``lr * generator_lr_scale`` and weight decay 0. Each group carries its scale under
    ``"lr_scale"`` for :class:`PolyLRSchedulerGroups`. The main group is first because
    nnU-Net logs ``param_groups[0]['lr']`` as the learning rate.
    """
    if not generator_lr_scale > 0:
        raise ValueError(f"generator_lr_scale must be > 0, got {generator_lr_scale}; "
                         "use mask 'prior' for a mask that does not learn")
    gen = generator_parameters(network)
    gen_ids = {id(p) for p in gen}
    main = [p for p in network.parameters() if id(p) not in gen_ids]
    groups = [{"params": main, "lr": lr, "weight_decay": weight_decay, LR_SCALE_KEY: 1.0}]
    if gen:
        groups.append({"params": gen, "lr": lr * generator_lr_scale, "weight_decay": 0.0,
                       LR_SCALE_KEY: float(generator_lr_scale)})
    return groups


class PolyLRSchedulerGroups(PolyLRScheduler):
    """nnU-Net's poly decay, ``lr = initial_lr * (1 - step / max_steps) ** exponent``, times each group's scale.

    Groups without an ``"lr_scale"`` key get scale 1, so on a single-group optimiser
    this is exactly nnU-Net's ``PolyLRScheduler``.
    """

    def step(self, current_step: Optional[int] = None) -> None:  # type: ignore[override]
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        poly = self.initial_lr * (1 - current_step / self.max_steps) ** self.exponent
        for group in self.optimizer.param_groups:
            group["lr"] = poly * group.get(LR_SCALE_KEY, 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
