"""`rep3d-nnunet erf` and `rep3d-nnunet masks`: thin shells over analysis.erf / analysis.masks.

Each command has ``add_<name>_parser(subparsers)`` (for the package CLI) and
``<name>_main(argv)`` (the same from Python, e.g. scripts); both end in ``run_<name>(args)``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from rep3d_nnunet.analysis.erf import (deepest_feature, erf_of_model, erf_table, module_output, network_output,
                                       plot_erf, random_inputs)
from rep3d_nnunet.analysis.loading import load_trained_model, preprocessed_patches
from rep3d_nnunet.analysis.masks import mask_table, masks_of_path, plot_masks
from rep3d_nnunet.nnunet.adapter import CheckpointError, TrainerNotFoundError


def _fold(value: str):
    return value if value == "all" else int(value)


def configure_erf_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model_folder", help="nnU-Net results folder: .../DatasetXXX/<Trainer>__<Plans>__<config>")
    p.add_argument("-f", "--fold", type=_fold, default=None, help="fold to load (default: the first available)")
    p.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name in fold_N")
    p.add_argument("-n", "--num-inputs", type=int, default=4, help="number of inputs to average over (default 4)")
    p.add_argument("--data", default=None,
                   help="nnU-Net preprocessed folder (nnUNet_preprocessed/DatasetXXX/<data identifier>) to take "
                        "central patches from; default: standard-normal random inputs")
    p.add_argument("--size", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="input size (default: the plans' patch size; smaller is faster on CPU)")
    p.add_argument("--module", default=None, metavar="NAME",
                   help="the ERF of this submodule's output (a name from model.named_modules(), e.g. "
                        "encoder.stages.2) instead of the deepest encoder stage (or MedNeXt bottleneck)")
    p.add_argument("-o", "--output", default="erf.png", help="PNG to write (default erf.png)")
    p.set_defaults(func=run_erf)
    return p


def _one_line_errors(run):
    """Expected failures (missing folder, fold or file; bad input; an unreadable checkpoint; a trainer class
    nowhere to be found, with the registration command) as one line and exit code 1."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (FileNotFoundError, ValueError, CheckpointError, TrainerNotFoundError) as e:
            print(f"rep3d-nnunet {run.__name__[len('run_'):]}: error: {e}", file=sys.stderr)
            return 1
    wrapped.__name__ = run.__name__
    return wrapped


@_one_line_errors
def run_erf(args: argparse.Namespace) -> int:
    model = load_trained_model(args.model_folder, args.fold, args.checkpoint)
    size = tuple(args.size) if args.size else model.patch_size
    if args.data:
        inputs = preprocessed_patches(args.data, args.num_inputs, size, model.num_input_channels)
        source = f"{len(inputs)} preprocessed patches from {args.data}"
        short = f"{len(inputs)} preprocessed patches ({os.path.basename(os.path.normpath(args.data))})"
    else:
        inputs = random_inputs(args.num_inputs, model.num_input_channels, size)
        source = short = f"{args.num_inputs} random N(0, 1) inputs"
    net = model.network
    maps = [("output", network_output(net))]
    if args.module:
        maps.insert(0, (args.module, module_output(net, args.module)))
    else:
        maps[:0] = [d for d in [deepest_feature(net)] if d is not None]
    results = erf_of_model(net, inputs, spacing=model.spacing, feature_fns=maps)
    print(f"{model.trainer_name} ({model.configuration}), {model.checkpoint_path}")
    print(f"ERF over {source} of size {'x'.join(map(str, size))}, spacing {model.spacing} mm; "
          "radius = half-width around the ERF centroid holding that share of its mass, per axis")
    print(erf_table(results))
    title = f"ERF of {os.path.basename(os.path.normpath(args.model_folder))}\n{short}"
    print(f"wrote {plot_erf(results, args.output, title)}")
    return 0


def configure_masks_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("path", help="nnU-Net results folder, or a checkpoint (.pth) file")
    p.add_argument("-f", "--fold", type=_fold, default=None, help="fold, for a model folder (default: first)")
    p.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name in fold_N")
    p.add_argument("-b", "--blocks", default=None, metavar="TEXT",
                   help="only blocks whose name contains TEXT (e.g. stages.3 for the deepest stage)")
    p.add_argument("-o", "--output", default="masks.png", help="PNG to write (default masks.png)")
    p.set_defaults(func=run_masks)
    return p


@_one_line_errors
def run_masks(args: argparse.Namespace) -> int:
    infos, message = masks_of_path(args.path, args.fold, args.checkpoint)
    if infos and args.blocks:
        names = [i.name for i in infos]
        infos = [i for i in infos if args.blocks in i.name]
        if not infos:
            raise ValueError(f"no masked block name contains {args.blocks!r}; blocks: {', '.join(names)}")
    if not infos:
        print(message)
        return 0
    if message:
        print(message)
    print(mask_table(infos))
    print("M^2 edge/centre: SGD learning rate of a face-centre edge tap relative to the centre tap")
    name = os.path.basename(os.path.normpath(args.path))
    print(f"wrote {plot_masks(infos, args.output, f'masks of {name}')}")
    return 0


def add_erf_parser(subparsers) -> argparse.ArgumentParser:
    """Register `erf` on an argparse subparsers object."""
    return configure_erf_parser(subparsers.add_parser(
        "erf", help="effective receptive field of a trained nnU-Net model (PNG + radii table)"))


def add_masks_parser(subparsers) -> argparse.ArgumentParser:
    """Register `masks` on an argparse subparsers object."""
    return configure_masks_parser(subparsers.add_parser(
        "masks", help="learned Rep3D masks M and learning-rate fields M^2 (PNG + table)"))


def erf_main(argv: Optional[Sequence[str]] = None) -> int:
    args = configure_erf_parser(argparse.ArgumentParser(prog="rep3d-nnunet erf")).parse_args(argv)
    return args.func(args)


def masks_main(argv: Optional[Sequence[str]] = None) -> int:
    args = configure_masks_parser(argparse.ArgumentParser(prog="rep3d-nnunet masks")).parse_args(argv)
    return args.func(args)

