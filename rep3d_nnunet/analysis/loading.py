"""Load a trained nnU-Net v2 model (ours, ResEnc, plain nnU-Net, any trainer) for analysis.

Mirrors ``nnUNetPredictor.initialize_from_trained_model_folder`` (plans + dataset.json
from the model folder, the trainer's network with deep supervision off, weights of one
fold) through the nnU-Net adapter (``rep3d_nnunet.nnunet.adapter``): its trainer lookup
searches this package and the registered user folders first, and a stock trainer
subpackage that cannot be imported (``primus`` on CPU-only torch) does not end the search.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from rep3d_nnunet.nnunet.adapter import (TRAINER_CHECKPOINT_KEYS, build_network, find_trainer_class,  # noqa: F401
                                         load_weights, network_io, read_checkpoint, state_dict_of)

CHECKPOINT = "checkpoint_final.pth"


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a checkpoint on the CPU (``adapter.read_checkpoint``: a clear error for an unreadable file)."""
    return read_checkpoint(path)


def available_folds(folder: str, checkpoint_name: str = CHECKPOINT) -> list:
    """Folds (``fold_N`` / ``fold_all``) of a model folder that hold ``checkpoint_name``, sorted."""
    folds = []
    for entry in sorted(os.listdir(folder)):
        if entry.startswith("fold_") and os.path.isfile(os.path.join(folder, entry, checkpoint_name)):
            f = entry[len("fold_"):]
            folds.append(int(f) if f.isdigit() else f)
    return folds


def model_folder_of_checkpoint(path: str) -> Optional[str]:
    """``.../<model folder>/fold_N/checkpoint.pth`` -> the model folder, if it holds plans.json and dataset.json."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    ok = all(os.path.isfile(os.path.join(folder, f)) for f in ("plans.json", "dataset.json"))
    return folder if ok else None


@dataclass
class TrainedModel:
    """A network in training form with its plans; what the analysis tools need to know about it."""

    network: nn.Module
    trainer_name: str
    configuration: str
    patch_size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    num_input_channels: int
    checkpoint_path: str
    checkpoint: Dict[str, Any] = field(repr=False, default_factory=dict)


def load_trained_model(folder: str, fold: Union[int, str, None] = None,
                       checkpoint_name: str = CHECKPOINT, form: str = "predictor") -> TrainedModel:
    """Build the network of an nnU-Net results folder and load one fold's weights (CPU, eval mode).

    ``form='predictor'`` builds what nnU-Net's predictor builds (for our trainers: the
    deploy form, equal in eval mode and faster); ``form='training'`` builds the training
    form (masks and generators present), which the mask pictures need. ``fold=None``
    takes the first available fold. Raises ``FileNotFoundError`` naming what is missing.
    """
    if form not in ("predictor", "training"):
        raise ValueError(f"form must be 'predictor' or 'training', got {form!r}")
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    for f in ("plans.json", "dataset.json"):
        if not os.path.isfile(os.path.join(folder, f)):
            raise FileNotFoundError(f"{folder} is not an nnU-Net model folder: no {f} "
                                    "(expected nnUNet_results/DatasetXXX/<Trainer>__<Plans>__<config>)")
    if fold is None:
        folds = available_folds(folder, checkpoint_name)
        if not folds:
            raise FileNotFoundError(f"no fold_*/{checkpoint_name} in {folder}")
        fold = folds[0]
    ckpt_path = os.path.join(folder, f"fold_{fold}", checkpoint_name)
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"no checkpoint {ckpt_path} (folds here: {available_folds(folder, checkpoint_name)})")
    checkpoint = read_checkpoint(ckpt_path, required=("trainer_name", "init_args"))
    plans_manager = PlansManager(load_json(os.path.join(folder, "plans.json")))
    dataset_json = load_json(os.path.join(folder, "dataset.json"))
    configuration = checkpoint["init_args"]["configuration"]
    pm, cm, n_in, n_out = network_io(plans_manager, dataset_json, configuration)
    trainer_class = find_trainer_class(checkpoint["trainer_name"])
    network = build_network(trainer_class, pm, cm, n_in, n_out, form="training" if form == "training" else "deploy")
    load_weights(network, state_dict_of(checkpoint))
    network.eval()
    return TrainedModel(network, checkpoint["trainer_name"], configuration, tuple(int(p) for p in cm.patch_size),
                        tuple(float(s) for s in cm.spacing), n_in, ckpt_path, checkpoint)


def centre_crop_or_pad(array, size) -> "torch.Tensor":
    """A (C, *size) float tensor cut from the centre of a (C, *shape) array, zero-padded where smaller."""
    import numpy as np
    shape = array.shape[1:]
    src = tuple(slice(max(0, (s - p) // 2), max(0, (s - p) // 2) + min(s, p)) for s, p in zip(shape, size))
    crop = np.asarray(array[(slice(None),) + src], dtype=np.float32)
    out = np.zeros((array.shape[0],) + tuple(size), dtype=np.float32)
    dst = tuple(slice((p - c) // 2, (p - c) // 2 + c) for c, p in zip(crop.shape[1:], size))
    out[(slice(None),) + dst] = crop
    return torch.from_numpy(out)


def preprocessed_patches(folder: str, n: int, size, in_channels: Optional[int] = None) -> list:
    """Up to ``n`` central patches (1, C, *size), one per case, from an nnU-Net preprocessed folder.

    ``folder`` is ``nnUNet_preprocessed/DatasetXXX/<data identifier>`` (the .b2nd or .npz files
    the model was trained on), so the inputs are normalised exactly as in training.
    """
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    dataset = infer_dataset_class(folder)(folder)
    patches = []
    for identifier in dataset.identifiers[:n]:
        data = dataset.load_case(identifier)[0]
        if in_channels is not None and data.shape[0] != in_channels:
            raise ValueError(f"{identifier} has {data.shape[0]} channels, the model takes {in_channels}")
        patches.append(centre_crop_or_pad(data, size)[None])
    if not patches:
        raise FileNotFoundError(f"no preprocessed cases in {folder}")
    return patches
