"""`--report_to` reaches a real tracker (tensorboard, local files): the `tracking` extra's path."""

import pytest

from .test_train_cli import run

pytestmark = pytest.mark.integration


def test_report_to_tensorboard_writes_loss_events(toy, tmp_path):
    pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    run(toy, out, "--report_to", "tensorboard", "--merge_adapter", "false")
    events = sorted(out.rglob("events.out.tfevents.*"))
    assert events, f"no tensorboard event file under {out}"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
