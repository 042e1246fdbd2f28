"""Resume by default (issue 16), in-process, with real training of ``tabular_gan`` for a few steps.

Checked: the default ``model.checkpoint_every`` (a duration) checkpoints the last epoch, so
raising ``model.epochs`` continues a finished run and ends where a straight run ends;
checkpoints of other settings - an older synthgen's tag-less ``checkpoint-003000.pt`` or a
tagged one - never delete this run's and are never resumed from; the loss history after a
resume holds every epoch once; a tracking outage during the fit (a real SQLite MLflow store
whose ``log_batch`` fails) never stops training: the tracker catches up when the store
answers again, or tags the run ``synthgen.tracking=incomplete`` when it does not.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from synthgen.config import DEFAULT_CHECKPOINT_EVERY, ModelConfig, TabularModelConfig, checkpoint_interval
from synthgen.data.schema import conform, infer_schema
from synthgen.synthesizers.tabular_gan import TabularGANSynthesizer
from synthgen.tracking import MlflowTracker
from synthgen.tracking.outage import TRACKING_TAG, PendingCalls
from synthgen.training.callbacks import Callback, History
from tests.conftest import PENGUINS
from tests.tiny import TINY_GAN
from tests.tiny import KillAfter


@pytest.fixture(scope="module")
def penguins():
    frame = pd.read_csv(PENGUINS)
    schema = infer_schema(frame)
    return conform(frame, schema), schema




def _fit(penguins, checkpoints=None, callbacks=(), **model) -> TabularGANSynthesizer:
    frame, schema = penguins
    cfg = TabularModelConfig(**{**TINY_GAN, **model})
    return TabularGANSynthesizer(schema, cfg, checkpoint_dir=checkpoints).fit(frame, callbacks=list(callbacks))


def _same_draw(a: TabularGANSynthesizer, b: TabularGANSynthesizer) -> bool:
    return a.sample(80, seed=4).equals(b.sample(80, seed=4))


def _figures(rows):
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


def test_checkpoint_every_takes_epochs_or_a_duration_and_defaults_to_two_minutes():
    assert ModelConfig().checkpoint_every == DEFAULT_CHECKPOINT_EVERY == "2m"
    assert checkpoint_interval("2m") == (0, 120.0) and checkpoint_interval("90s") == (0, 90.0)
    assert checkpoint_interval(5) == (5, 0.0) and ModelConfig(checkpoint_every="5").checkpoint_every == 5
    assert ModelConfig(checkpoint_every="0s").checkpoint_every == 0  # off, like 0
    for bad in (-1, "2 weeks", True, 1.5):
        with pytest.raises(ValueError, match="duration"):
            ModelConfig(checkpoint_every=bad)


def test_extending_epochs_continues_and_ends_where_a_straight_run_ends(penguins, tmp_path):
    straight = _fit(penguins, epochs=4)
    _fit(penguins, tmp_path, epochs=2)  # the default checkpoint_every: the last epoch is checkpointed
    assert [p.name[-9:] for p in tmp_path.iterdir()] == ["000002.pt"]
    history = History()
    longer = _fit(penguins, tmp_path, [history], epochs=4)
    assert longer.loop_result_.resumed_from == 2
    assert [row["epoch"] for row in history.rows] == [0, 1, 2, 3]
    assert _figures(history.rows) == _figures(straight.loop_result_.history)
    assert _same_draw(longer, straight)
    again = _fit(penguins, tmp_path, epochs=4)  # a finished run with the same settings: nothing to train
    assert again.loop_result_.resumed_from == 4 and _same_draw(again, straight)


def test_other_settings_never_delete_this_runs_checkpoints_nor_are_resumed(penguins, tmp_path):
    stale_dir = tmp_path / "stale"
    _fit(penguins, stale_dir, epochs=1, lr=1e-3)  # a real checkpoint of other settings
    (stale,) = stale_dir.iterdir()
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    planted = {  # an earlier long run (an older synthgen's name and this one's), and one at this run's end
        "checkpoint-003000.pt": stale, f"{stale.name[:24]}-003000.pt": stale, "checkpoint-000003.pt": stale,
    }
    for name, source in planted.items():
        shutil.copy(source, checkpoints / name)
    reference = _fit(penguins, epochs=3)

    with pytest.raises(KeyboardInterrupt):
        _fit(penguins, checkpoints, [KillAfter(after=2)], epochs=3, checkpoint_every=1)
    mine = sorted(p.name for p in checkpoints.iterdir() if p.name not in planted)
    assert [name[-9:] for name in mine] == ["000001.pt", "000002.pt"]  # written, and kept

    history = History()
    resumed = _fit(penguins, checkpoints, [history], epochs=3, checkpoint_every=1)
    assert resumed.loop_result_.resumed_from == 2  # the stale epoch-3 file was read, refused, passed over
    assert [row["epoch"] for row in history.rows] == [0, 1, 2]
    assert _same_draw(resumed, reference)
    left = sorted(p.name for p in checkpoints.iterdir())
    assert set(planted) <= set(left)  # other settings' checkpoints are left alone
    assert [name[-9:] for name in left if name not in planted] == ["000002.pt", "000003.pt"]


def _tracker(mlflow_uri) -> MlflowTracker:
    tracker = MlflowTracker(mlflow_uri, "outage")
    tracker.start("outage")
    tracker.pending = PendingCalls(retry_seconds=0, final_attempts=2, final_pause=0)  # retry at once: a short test
    return tracker


def _outage(monkeypatch, tracker: MlflowTracker, calls: int | None) -> list[int]:
    """``log_batch`` of the tracker's real client fails for its first ``calls`` calls (all: ``None``)."""
    real = tracker.client.log_batch
    failed = [0]

    def log_batch(*args, **kwargs):
        if calls is None or failed[0] < calls:
            failed[0] += 1
            raise ConnectionError("tracking server unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "log_batch", log_batch)
    return failed


def test_a_tracking_outage_during_the_fit_is_retried_and_caught_up(penguins, mlflow_uri, monkeypatch, caplog):
    tracker = _tracker(mlflow_uri)
    failed = _outage(monkeypatch, tracker, calls=2)  # epochs 0 and 1 fail; later sends succeed
    model = _fit(penguins, callbacks=[tracker.callback()], epochs=4)
    assert model.loop_result_.epochs_run == 4 and failed[0] == 2
    assert not tracker.incomplete and not len(tracker.pending)
    steps = [m.step for m in tracker.client.get_metric_history(tracker.run_id, "loss_g")]
    assert sorted(steps) == [0, 1, 2, 3]  # every epoch, once
    assert any("tracking" in r.getMessage() and "training goes on" in r.getMessage() for r in caplog.records)


def test_a_tracking_outage_that_lasts_marks_the_run_incomplete_and_training_finishes(penguins, mlflow_uri,
                                                                                     monkeypatch):
    tracker = _tracker(mlflow_uri)
    _outage(monkeypatch, tracker, calls=None)
    model = _fit(penguins, callbacks=[tracker.callback()], epochs=3)
    assert model.loop_result_.epochs_run == 3 and model.sample(5, seed=0).shape[0] == 5
    assert tracker.incomplete and len(tracker.pending) == 3  # one batch of figures per epoch, kept
    assert tracker.client.get_run(tracker.run_id).data.tags[TRACKING_TAG] == "incomplete"
    monkeypatch.undo()  # the store answers again: a later catch-up sends the rest and says so
    assert tracker.catch_up() and not tracker.incomplete
    assert len(tracker.client.get_metric_history(tracker.run_id, "loss_g")) == 3
    assert tracker.client.get_run(tracker.run_id).data.tags[TRACKING_TAG] == "complete"
