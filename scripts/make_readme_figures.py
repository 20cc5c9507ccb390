"""Generate the README's example pictures into docs/figures/ with the package's own analysis tools.

    python scripts/make_readme_figures.py                      # self-contained, about a minute on 2 CPU cores
    python scripts/make_readme_figures.py --model-folder DIR [--data PREPROCESSED] [--blocks TEXT]
                                                               # also: the two commands on a trained model

Self-contained pictures (no trained nnU-Net model needed):
- ``erf_kernel_sizes.png``: ERF of untrained Rep3D encoders (one stage, two blocks) with
  7^3, 13^3 and 21^3 kernels, on random inputs: ``erf_of_model`` + ``plot_erf``.
- ``masks_toy_training.png``: the masks of a small Rep3D network after a short AdamW run
  on the synthetic demo task (ellipsoid + tube): ``mask_infos`` + ``plot_masks``. A toy
  run, to show what a mask that has left the prior looks like, not a result.
With ``--model-folder`` (an nnU-Net results folder): ``erf_model.png`` and
``masks_model.png``, exactly what ``rep3d-nnunet erf`` / ``masks`` write.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rep3d_nnunet import Rep3DEncoder
from rep3d_nnunet.analysis.erf import erf_of_model, erf_table, plot_erf, random_inputs
from rep3d_nnunet.analysis.masks import mask_infos, mask_table, plot_masks

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"


def erf_kernel_sizes(out: Path) -> None:
    results = []
    for k in (7, 13, 21):
        torch.manual_seed(0)
        encoder = Rep3DEncoder(1, (8,), depths=2, kernel_sizes=k, strides=1, stem_kernel_size=3)
        [r] = erf_of_model(encoder, random_inputs(4, 1, (40, 40, 40)),
                           feature_fns=[(f"Rep3D {k}^3, untrained", lambda x, e=encoder: e(x)[-1])])
        results.append(r)
    print(erf_table(results))
    print("wrote", plot_erf(results, str(out / "erf_kernel_sizes.png"),
                            "ERF of one-stage Rep3D encoders (2 blocks, LRBM at initialisation), 4 random inputs",
                            dpi=60))


class ToyNet(nn.Module):
    """A Rep3D encoder with a 1x1 head: just enough network for the masks to learn something."""

    def __init__(self, kernel_size: int = 13) -> None:
        super().__init__()
        self.encoder = Rep3DEncoder(1, (8,), depths=2, kernel_sizes=kernel_size, strides=1, stem_kernel_size=3)
        self.head = nn.Conv3d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1])


def masks_toy_training(out: Path, steps: int = 40) -> None:
    from rep3d_nnunet.demo.synthetic import synthetic_case

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = ToyNet()
    # the paper's optimiser and settings (AdamW, lr 1e-4, weight decay 0.08)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.08)
    for step in range(steps):
        cases = [synthetic_case(rng, (24, 24, 24)) for _ in range(2)]
        x = torch.from_numpy(np.stack([c[0] for c in cases])[:, None]).float()
        x = (x - x.mean()) / x.std()
        y = torch.from_numpy(np.stack([c[1] for c in cases])).long()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            print(f"toy training step {step}: loss {loss.item():.3f}")
    infos = mask_infos(net)
    print(mask_table(infos))
    print("wrote", plot_masks(infos, str(out / "masks_toy_training.png"),
                              f"Rep3D masks after {steps} AdamW steps (lr 1e-4) on the synthetic demo task (toy run)",
                              dpi=60))


def model_folder_figures(folder: str, out: Path, data: str = None, blocks: str = None) -> None:
    """Exactly the two commands: rep3d-nnunet erf / masks."""
    from rep3d_nnunet.analysis.cli import erf_main, masks_main

    erf_main([folder, "-n", "4", "-o", str(out / "erf_model.png")] + (["--data", data] if data else []))
    masks_main([folder, "-o", str(out / "masks_model.png")] + (["--blocks", blocks] if blocks else []))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-folder", default=None, help="also run erf/masks on this nnU-Net results folder")
    p.add_argument("--data", default=None, help="preprocessed folder for the model's ERF inputs (erf --data)")
    p.add_argument("--blocks", default=None, help="only these mask blocks (masks --blocks)")
    p.add_argument("--only-model", action="store_true", help="skip the self-contained pictures")
    p.add_argument("-o", "--out", default=str(OUT), help=f"output folder (default {OUT})")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.only_model:
        erf_kernel_sizes(out)
        masks_toy_training(out)
    if args.model_folder:
        model_folder_figures(args.model_folder, out, args.data, args.blocks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
