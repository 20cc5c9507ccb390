"""``nnUNetTrainerRep3D_demo``: the demo's CPU schedule (``rep3d-nnunet demo``, ``scripts/demo.sh``).

15 epochs x 20 iterations, batch at most 2, no mirroring: a few minutes on 2 cores.
AdamW at lr 1e-3 instead of the paper's 1e-4: 1e-4 is tuned for 60k iterations, the
demo has a few hundred. Enough to see the pipeline learn; not a benchmark.
"""
from __future__ import annotations

from dataclasses import replace

from rep3d_nnunet.nnunet.trainers.architectures import nnUNetTrainerRep3D
from rep3d_nnunet.nnunet.trainers.base import PAPER_ADAMW
from rep3d_nnunet.nnunet.trainers.variants.training_length.tiny import TinyScheduleMixin

DEMO_SCHEDULE = dict(num_epochs=15, num_iterations_per_epoch=20, num_val_iterations_per_epoch=3, save_every=5)


class nnUNetTrainerRep3D_demo(TinyScheduleMixin, nnUNetTrainerRep3D):
    """Rep3D on the demo's CPU schedule (AdamW lr 1e-3, batch at most 2, no mirroring)."""
    schedule = DEMO_SCHEDULE
    max_batch_size = 2
    reads_cpu_schedule = False  # the demo's schedule is its own
    recipe = replace(PAPER_ADAMW, lr=1e-3)
