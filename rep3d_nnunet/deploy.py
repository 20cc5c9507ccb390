"""Deploy conversion: fold every re-parameterisable module of a model (timm's convention)."""
from __future__ import annotations

import torch
from torch import nn


class Reparameterizable:
    """Mixin marking a module whose ``reparameterize() -> nn.Module`` returns its deploy form.

    A marker rather than duck typing: other libraries use the name ``reparameterize``
    for unrelated things (e.g. a VAE's sampling step).
    """

    def reparameterize(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError


def _convert(module: nn.Module) -> nn.Module:
    # children first, so a parent's reparameterize() sees its children already deployed
    for name, child in list(module.named_children()):
        new = _convert(child)
        if new is not child:
            setattr(module, name, new)
    return module.reparameterize() if isinstance(module, Reparameterizable) else module


@torch.no_grad()
def reparameterize_model(model: nn.Module) -> nn.Module:
    """Convert ``model`` to its deploy form in place and return it.

    Masks (W (.) M), CSLA branches and BatchNorms following a large-kernel conv are
    folded into plain depthwise ``nn.Conv3d`` modules; generators and priors are
    dropped. BatchNorms are folded with their running statistics, so the result
    equals the training form in ``eval()`` mode. Idempotent. Works on any model: only
    ``Reparameterizable`` modules are touched. If ``model`` itself is a
    re-parameterisable leaf (e.g. a bare ``ReparamDWConv3d``), its replacement is
    returned, so always use the return value.
    """
    return _convert(model)
