"""CPU-sized training schedules: one text form, ``<epochs>x<iterations>,batch<N>``, for every trainer family.

A benchmark on a CPU cannot afford nnU-Net's 1000 x 250 iterations, so ``rep3d-nnunet benchmark run
--schedule cpu:20x10,batch2`` runs every method's ``_tiny`` trainer and hands it the same schedule through
the environment variable ``REP3D_CPU_SCHEDULE`` (the ``_tiny`` trainers read it with
:func:`schedule_from_env`). One parser, here, so that every method is trained on exactly the same schedule.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Mapping, Optional

CPU_SCHEDULE_ENV = "REP3D_CPU_SCHEDULE"
SCHEDULE_PREFIX = "cpu:"  # the benchmark CLI's spelling: --schedule cpu:<epochs>x<iterations>,batch<N>

# nnU-Net's defaults are 250 training and 50 validation iterations per epoch, a checkpoint every 50 epochs;
# a CPU schedule keeps that 5:1 ratio (at least one validation iteration) and at most one intermediate save
NNUNET_TRAIN_PER_VAL_ITERATION = 5
NNUNET_SAVE_EVERY = 50

_PATTERN = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*,\s*batch\s*(\d+)\s*$", re.IGNORECASE)


def parse_cpu_schedule(text: str) -> Dict[str, int]:
    """Parse ``"<epochs>x<iterations>,batch<N>"`` (an optional ``cpu:`` prefix is accepted).

    Returns the trainer attributes: ``num_epochs``, ``num_iterations_per_epoch``,
    ``num_val_iterations_per_epoch`` (iterations // 5, at least 1, nnU-Net's ratio), ``save_every``
    (nnU-Net's 50, at most the epoch count) and ``batch_size`` (an upper bound: trainers keep a
    smaller planned batch). Raises ``ValueError`` naming the expected form for anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"CPU schedule must be text like '20x10,batch2', got {text!r}")
    body = text.strip()
    if body.lower().startswith(SCHEDULE_PREFIX):
        body = body[len(SCHEDULE_PREFIX):]
    match = _PATTERN.match(body)
    if match is None:
        raise ValueError(f"cannot read CPU schedule {text!r}: expected '<epochs>x<iterations>,batch<N>' with "
                         "positive integers, e.g. '20x10,batch2' (20 epochs of 10 iterations, batch size <= 2)")
    epochs, iterations, batch = (int(g) for g in match.groups())
    for name, value in (("epochs", epochs), ("iterations", iterations), ("batch", batch)):
        if value < 1:
            raise ValueError(f"CPU schedule {text!r}: {name} must be at least 1, got {value} "
                             "(form '<epochs>x<iterations>,batch<N>')")
    return dict(num_epochs=epochs, num_iterations_per_epoch=iterations,
                num_val_iterations_per_epoch=max(1, iterations // NNUNET_TRAIN_PER_VAL_ITERATION),
                save_every=min(NNUNET_SAVE_EVERY, epochs), batch_size=batch)


def format_cpu_schedule(schedule: Mapping[str, int]) -> str:
    """The text form of a parsed schedule (inverse of :func:`parse_cpu_schedule`, without the prefix)."""
    return f"{schedule['num_epochs']}x{schedule['num_iterations_per_epoch']},batch{schedule['batch_size']}"


def schedule_from_env(environ: Optional[Mapping[str, str]] = None) -> Optional[Dict[str, int]]:
    """The schedule in ``REP3D_CPU_SCHEDULE``, or None when it is unset or empty (bad text raises ValueError)."""
    text = (os.environ if environ is None else environ).get(CPU_SCHEDULE_ENV, "").strip()
    if not text:
        return None
    try:
        return parse_cpu_schedule(text)
    except ValueError as e:
        raise ValueError(f"{CPU_SCHEDULE_ENV}: {e}. Fix or unset the variable.") from None
