"""Training form vs deploy form: the one module that decides which network is built where.

A Rep3D network has two forms. The *training form* holds what training needs (mask
generators, CSLA branches, BatchNorms after the large-kernel convs); the *deploy form*
is what prediction needs (plain depthwise convs with all of that folded in). Checkpoints
always hold the training form, so they stay stock nnU-Net checkpoints.

- **Training form, built by the trainer.** nnU-Net's ``initialize()`` builds the network
  with ``self.build_network_architecture(...)``. Our base trainer sets that name on each
  *instance* to :func:`training_form_builder` (an instance attribute shadows the class's
  method), so training, ``--c``, ``--val`` and the end-of-training validation use the
  training form.
- **Deploy form, built for the predictor.** nnU-Net's predictor calls
  ``build_network_architecture`` on the trainer *class*; our base trainer's classmethod
  builds ``form="deploy"``.
- **Fold on load.** A deploy network built here carries a ``load_state_dict`` pre-hook
  (:class:`FoldOnLoad`) that knows the network's constructor arguments: training-form
  weights (the checkpoint's) are loaded into a training-form twin, folded, and the
  folded weights are what the deploy network loads. The predictor re-loads the same
  weights for every case; the last fold is reused while the very same tensors come back
  unchanged.

:func:`build_network` is the one entry point for code outside the trainers (analysis,
benchmark): any trainer class, any form; nnU-Net's own trainers and the baselines have
one form and ignore it.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

FORMS = ("deploy", "training")


def check_form(form: str) -> str:
    """Return ``form`` if it is 'deploy' or 'training', else raise ``ValueError`` naming both."""
    if form not in FORMS:
        raise ValueError(f"form must be 'deploy' (what nnU-Net's predictor runs) or 'training' (what the "
                         f"trainer trains, masks and generators present), got {form!r}")
    return form


# ---------------------------------------------------------------- fold on load

class FoldOnLoad:
    """``load_state_dict`` pre-hook of a deploy-form network: training-form weights are folded on the way in.

    ``build_training_form`` makes the network's training-form twin (same constructor
    arguments, ``deploy=False``). Weights whose keys already are the deploy form's load as
    they are. ``folds`` counts how often weights were actually folded.
    """

    def __init__(self, deploy_keys: Sequence[str], build_training_form: Callable[[], nn.Module]) -> None:
        self.deploy_keys = frozenset(deploy_keys)
        self.build_training_form = build_training_form
        self.folds = 0
        # the last folded weights and the source tensors they came from, each with its in-place version
        self._last: Optional[Tuple[List[Tuple[str, torch.Tensor, int]], Dict[str, torch.Tensor]]] = None

    def __call__(self, module: nn.Module, state_dict: Dict[str, Any], prefix: str, local_metadata: dict,
                 strict: bool, missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str]) -> None:
        # state_dict is load_state_dict's own copy: rewriting it leaves the caller's dict untouched
        ours = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if set(ours) == self.deploy_keys:
            return
        folded = self.folded(ours)
        for key in ours:
            del state_dict[prefix + key]
        state_dict.update({prefix + k: v for k, v in folded.items()})

    def folded(self, weights: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
        """The deploy-form weights of training-form ``weights`` (reused while the same tensors come back)."""
        source = [(k, v, getattr(v, "_version", 0)) for k, v in sorted(weights.items())]
        if self._last is not None and len(self._last[0]) == len(source) and all(
                k == k0 and v is v0 and ver == ver0 for (k, v, ver), (k0, v0, ver0) in zip(source, self._last[0])):
            return self._last[1]
        twin = self.build_training_form()
        try:
            twin.load_state_dict(dict(weights))
        except (RuntimeError, ValueError) as e:
            raise RuntimeError(
                "these weights fit neither the deploy form nor the training form of this network (were they "
                "trained with other plans, another trainer variant, or an older rep3d-nnunet?)\n" + str(e)) from e
        from rep3d_nnunet.deploy import reparameterize_model

        folded = reparameterize_model(twin.eval()).state_dict()
        self.folds += 1
        self._last = (source, folded)  # holds the source tensors: identity checks stay valid
        return folded


def attach_fold_on_load(deploy_network: nn.Module, build_training_form: Callable[[], nn.Module]) -> nn.Module:
    """Register :class:`FoldOnLoad` on ``deploy_network`` (once) and return the network."""
    if fold_on_load_hook(deploy_network) is None:
        hook = FoldOnLoad(deploy_network.state_dict().keys(), build_training_form)
        deploy_network.register_load_state_dict_pre_hook(hook)
        deploy_network._rep3d_fold_on_load = hook  # found again by fold_on_load_hook / fold_count
    return deploy_network


def fold_on_load_hook(network: nn.Module) -> Optional[FoldOnLoad]:
    """The fold-on-load hook of a deploy network built here, or None."""
    return getattr(_unwrap(network), "_rep3d_fold_on_load", None)


def fold_count(network: nn.Module) -> int:
    """How many times ``network`` folded training-form weights while loading them (0 without the hook)."""
    hook = fold_on_load_hook(network)
    return 0 if hook is None else hook.folds


# ---------------------------------------------------------------- Rep3D networks in either form

def rep3d_unet(*, form: str = "training", **init_kwargs: Any) -> nn.Module:
    """``Rep3DUNet(**init_kwargs)`` in ``form``; the deploy form folds training-form weights on load.

    ``init_kwargs`` are Rep3DUNet's constructor arguments (classes, not plans' strings)
    without ``deploy``.
    """
    from rep3d_nnunet.networks.unet import Rep3DUNet

    check_form(form)
    if "deploy" in init_kwargs:
        raise ValueError("pass form='deploy' or form='training', not deploy=...")
    network = Rep3DUNet(**init_kwargs, deploy=form == "deploy")
    if form == "deploy":
        attach_fold_on_load(network, lambda: Rep3DUNet(**init_kwargs, deploy=False))
    return network


def rep3d_network_from_plans(arch_kwargs: Mapping[str, Any], arch_kwargs_req_import: Sequence[str],
                             num_input_channels: int, num_output_channels: int, *, form: str,
                             deep_supervision: bool) -> nn.Module:
    """A ``Rep3DUNet`` from a plans architecture block (strings resolved by nnU-Net's ``get_network_from_plans``)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from rep3d_nnunet.nnunet.architecture import NETWORK_CLASS_NAME

    check_form(form)

    def build(deploy: bool, allow_init: bool) -> nn.Module:
        return get_network_from_plans(NETWORK_CLASS_NAME, dict(arch_kwargs, deploy=deploy), arch_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=allow_init,
                                      deep_supervision=deep_supervision)

    network = build(form == "deploy", True)
    if form == "deploy":
        attach_fold_on_load(network, lambda: build(False, False))  # its weights are overwritten at once
    return network


# ---------------------------------------------------------------- any trainer's network

def build_network(trainer_class: type, plans_manager: Any, configuration_manager: Any, num_input_channels: int,
                  num_output_channels: int, *, form: str = "deploy", deep_supervision: bool = False) -> nn.Module:
    """The network ``trainer_class`` builds for a configuration, in ``form``.

    ``form='deploy'`` is what nnU-Net's predictor runs; ``'training'`` what the trainer
    trains. Our trainers build it through their ``build_network_form`` classmethod; any
    other trainer (nnU-Net's own, users' stock subclasses) through
    ``build_network_architecture`` in either of nnU-Net's signatures, as its predictor
    does -- those have one form.
    """
    check_form(form)
    own = getattr(trainer_class, "build_network_form", None)
    if own is not None:
        return own(plans_manager, configuration_manager, num_input_channels, num_output_channels, form=form,
                   deep_supervision=deep_supervision)
    build = trainer_class.build_network_architecture
    cm = configuration_manager
    if "plans_manager" in inspect.signature(build).parameters:
        return build(plans_manager, cm, num_input_channels, num_output_channels,
                     enable_deep_supervision=deep_supervision)
    # nnU-Net's pre-2.6 signature, which its predictor still accepts
    return build(cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                 num_input_channels, num_output_channels, enable_deep_supervision=deep_supervision)


def _training_form(trainer_class: type, plans_manager: Any, configuration_manager: Any, num_input_channels: int,
                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
    return build_network(trainer_class, plans_manager, configuration_manager, num_input_channels,
                         num_output_channels, form="training", deep_supervision=enable_deep_supervision)


def training_form_builder(trainer_class: type) -> Callable[..., nn.Module]:
    """``build_network_architecture`` with nnU-Net's signature that builds ``trainer_class``'s training form.

    Our base trainer sets it as an instance attribute in ``__init__``, where nnU-Net's
    ``initialize()`` looks it up (picklable: a ``functools.partial`` of a module function).
    """
    return functools.partial(_training_form, trainer_class)


def _unwrap(network: nn.Module) -> nn.Module:
    # DDP (.module) and torch.compile (._orig_mod) wrappers, as nnU-Net unwraps them
    from torch._dynamo import OptimizedModule
    from torch.nn.parallel import DistributedDataParallel

    while isinstance(network, (OptimizedModule, DistributedDataParallel)):
        network = network._orig_mod if isinstance(network, OptimizedModule) else network.module
    return network


def load_weights(network: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Load a checkpoint's ``network_weights`` into ``network`` (DDP / compiled wrappers unwrapped).

    A deploy network built here folds training-form weights on the way in; any other
    network loads them as ``load_state_dict`` does (strict).
    """
    _unwrap(network).load_state_dict(state_dict)
