"""The CPU schedule's text form (``REP3D_CPU_SCHEDULE``, ``--schedule cpu:...``)."""
import pytest

from rep3d_nnunet.nnunet.schedule import (CPU_SCHEDULE_ENV, format_cpu_schedule, parse_cpu_schedule,
                                          schedule_from_env)


def test_parse_gives_trainer_attributes():
    s = parse_cpu_schedule("20x10,batch2")
    assert s == dict(num_epochs=20, num_iterations_per_epoch=10, num_val_iterations_per_epoch=2,
                     save_every=20, batch_size=2)


def test_parse_accepts_prefix_spaces_and_keeps_nnunet_ratios():
    s = parse_cpu_schedule(" cpu: 100 x 250 , Batch 4 ")
    assert s["num_epochs"] == 100 and s["batch_size"] == 4
    assert s["num_val_iterations_per_epoch"] == 50  # nnU-Net's 250:50
    assert s["save_every"] == 50
    assert parse_cpu_schedule("1x3,batch1")["num_val_iterations_per_epoch"] == 1  # never zero


def test_format_round_trips():
    for text in ("1x2,batch1", "20x10,batch2", "300x7,batch16"):
        assert format_cpu_schedule(parse_cpu_schedule(text)) == text


@pytest.mark.parametrize("bad", ["", "20x10", "20,batch2", "x10,batch2", "20x10,batch", "0x10,batch2",
                                 "20x0,batch2", "20x10,batch0", "-1x10,batch2", "20x10,b2", "twentyx10,batch2"])
def test_bad_text_raises_naming_the_form(bad):
    with pytest.raises(ValueError, match="epochs"):
        parse_cpu_schedule(bad)


def test_non_text_raises():
    with pytest.raises(ValueError, match="20x10,batch2"):
        parse_cpu_schedule(None)  # type: ignore[arg-type]


def test_schedule_from_env():
    assert schedule_from_env({}) is None
    assert schedule_from_env({CPU_SCHEDULE_ENV: "  "}) is None
    assert schedule_from_env({CPU_SCHEDULE_ENV: "3x4,batch2"})["num_iterations_per_epoch"] == 4
    with pytest.raises(ValueError, match=CPU_SCHEDULE_ENV):
        schedule_from_env({CPU_SCHEDULE_ENV: "3x4"})
