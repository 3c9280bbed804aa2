"""The Ray backend's pieces without a Ray runtime: per-epoch checkpoints resume training exactly, the driver's
recorder turns every way a Tune trial can end into a finished Optuna trial, ASHA's stops become PRUNED, and the
searcher survives Tune's pickling."""

from __future__ import annotations

import math
import pickle
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from nas.search.ray_backend import PruningASHA
from nas.search.ray_context import NAS_KEY, RECORD_KEY, RayRun, register, unregister
from nas.search.ray_recorder import StudyRecorder
from nas.search.ray_searcher import NasOptunaSearch
from nas.search.ray_trainable import TuneCheckpoint
from nas.search.sampling import SearchPlan
from nas.space import load_space
from nas.space.schema import TrainSection
from nas.train import DeviceData, TrainPlan, train


# -- checkpoints --------------------------------------------------------------------------------------------
class Died(Exception):
    pass


def tiny_training(epochs: int = 4):
    torch.manual_seed(0)
    inputs, targets = torch.randn(96, 1, 8, 8), torch.randint(0, 3, (96,))
    data = DeviceData(inputs, targets)
    plan = TrainPlan(
        TrainSection(epochs=epochs, batch_size=16, lr=0.01),
        "classification",
        torch.device("cpu"),
        amp=False,
        channels_last=False,
        seed=0,
    )

    def model() -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(256, 3),
        )

    return data, plan, model


def test_a_trial_resumed_from_its_checkpoint_ends_as_if_never_interrupted(tmp_path):
    data, plan, model = tiny_training()
    whole = model()
    expected = train(whole, data, data, plan)

    kept = tmp_path / "kept"
    checkpoint = TuneCheckpoint(None)

    def die_after_epoch_2(epoch: int, metrics: dict) -> None:
        with checkpoint.take() as saved:  # what the trainable reports to Tune, copied as Tune would
            shutil.copytree(saved.path, kept, dirs_exist_ok=True)
        if epoch == 2:
            raise Died

    with pytest.raises(Died):
        train(model(), data, data, plan, die_after_epoch_2, checkpoint)
    import ray.tune

    resumed = model()
    metrics = train(
        resumed, data, data, plan, None, TuneCheckpoint(ray.tune.Checkpoint.from_directory(str(kept)))
    )
    assert metrics["resumed_from_epoch"] == 2
    assert metrics["accuracy"] == expected["accuracy"] and metrics["loss"] == expected["loss"]
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_no_checkpoint_is_kept_for_the_last_epoch():
    data, plan, model = tiny_training(epochs=2)
    saved: list[int] = []

    class Recorder:
        def load(self):
            return None

        def save(self, epoch: int, state: dict) -> None:
            saved.append(epoch)
            assert {"model", "optimizer", "scheduler", "scaler", "generator", "torch_rng", "metrics"} <= set(
                state
            )

    train(model(), data, data, plan, None, Recorder())
    assert saved == [1]


# -- the recorder -------------------------------------------------------------------------------------------
@pytest.fixture
def run(tmp_path):
    space = load_space(
        str(_space_file(tmp_path)),
        ["objectives=[accuracy, {flops: minimize}]", "constraints={flops: {max: 1000000}}"],
    )
    study = optuna.create_study(directions=space.directions, study_name=space.name)
    record = RayRun(space, tmp_path, study)
    key = register(record)
    yield key, record
    unregister(key)


def _space_file(tmp_path: Path) -> Path:
    from raytest_cluster import TINY

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def tune_trial(record: RayRun, trial_id: str, last_result: dict | None = None) -> SimpleNamespace:
    asked = record.study.ask()
    candidate = {"scale": 1.0, "operators": {}}
    asked.set_user_attr("candidate", candidate)
    config = {NAS_KEY: {"number": asked.number, "trial_id": asked._trial_id, "candidate": candidate}}
    return SimpleNamespace(
        trial_id=trial_id,
        config=config,
        last_result=last_result or {},
        num_failures=0,
        get_pickled_error=lambda: RuntimeError("The actor died unexpectedly"),
    )


def outcome(values, state="complete", constraints=(0.0,)) -> dict:
    import json

    record = {
        "state": state,
        "values": list(values),
        "constraints": list(constraints),
        "metrics": {"accuracy": values[0], "flops": values[1]},
    }
    return {RECORD_KEY: json.dumps(record), "epoch": 2, "accuracy": values[0]}


def finished(record: RayRun) -> list:
    return [
        (t.state.name, t.values, t.user_attrs.get("error"), t.user_attrs.get("interrupted"))
        for t in record.study.get_trials()
    ]


def test_outcomes_become_finished_optuna_trials(run):
    key, record = run
    recorder = StudyRecorder(key)
    for number, result in enumerate(
        [outcome([0.9, 5e5]), outcome([math.nan, 5e5]), outcome([0.5, 2e6], constraints=(1.0,))]
    ):
        trial = tune_trial(record, f"t{number}", result)
        recorder.on_trial_start(0, [], trial)
        recorder.on_trial_complete(0, [], trial)
    states = finished(record)
    assert states[0] == ("COMPLETE", [0.9, 5e5], None, None)
    assert states[1][0] == "FAIL" and "not finite" in states[1][2]  # NaN: failed, never left RUNNING
    assert states[2][0] == "COMPLETE" and record.study.trials[2].system_attrs["constraints:flops"] == 1.0
    assert record.study.trials[0].user_attrs["metrics"] == {"accuracy": 0.9, "flops": 5e5}


def test_pipeline_errors_stops_and_dead_workers_end_failed(run):
    import json

    key, record = run
    recorder = StudyRecorder(key)
    failed = tune_trial(
        record, "a", {RECORD_KEY: json.dumps({"state": "failed", "error": "TrainingDiverged: nan"})}
    )
    stopped = tune_trial(record, "b", {"epoch": 1, "accuracy": 0.2})
    dead = tune_trial(record, "c")
    dead.num_failures = 2
    recorder.on_trial_complete(0, [], failed)
    recorder.on_trial_complete(0, [], stopped)
    recorder.on_trial_error(0, [], dead)
    states = finished(record)
    assert states[0] == ("FAIL", None, "TrainingDiverged: nan", None)
    assert states[1][0] == "FAIL" and states[1][3] is True  # stopped before it finished: retried on a rerun
    assert states[2][0] == "FAIL" and states[2][2].startswith("the Ray worker failed 2 times: RuntimeError")


def test_asha_stops_become_pruned_trials(run):
    key, record = run
    asha = PruningASHA(
        key,
        time_attr="training_iteration",
        metric="accuracy",
        mode="max",
        max_t=4,
        grace_period=1,
        reduction_factor=2,
    )
    good, bad = tune_trial(record, "good"), tune_trial(record, "bad")
    for trial in (good, bad):
        asha.on_trial_add(None, trial)
    assert (
        asha.on_trial_result(None, good, {"training_iteration": 1, "accuracy": 0.9})
        == TrialScheduler.CONTINUE
    )
    assert asha.on_trial_result(None, bad, {"training_iteration": 1, "accuracy": 0.1}) == TrialScheduler.STOP
    assert record.pruned == {"bad"}
    bad.last_result = {"training_iteration": 1, "accuracy": 0.1, "epoch": 1}
    recorder = StudyRecorder(key)
    recorder.on_trial_result(0, [], bad, bad.last_result)
    recorder.on_trial_complete(0, [], bad)
    pruned = record.study.trials[1]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["pruned"]


def test_the_searcher_survives_tunes_pickling(run):
    key, record = run
    plan = SearchPlan.from_space(record.space, (1, 8, 8))
    searcher = NasOptunaSearch(key, plan)
    config = searcher.suggest("first")
    assert config[NAS_KEY]["number"] == 0 and "stage1" in config[NAS_KEY]["candidate"]["operators"]
    assert record.study.trials[0].user_attrs["candidate"] == config[NAS_KEY]["candidate"]
    restored = pickle.loads(pickle.dumps(searcher))  # tuner.pkl; the study and storage are not in it
    assert restored._ot_study is None
    assert restored.suggest("second")[NAS_KEY]["number"] == 1
    assert searcher.metric == ["accuracy", "flops"] and searcher.mode == ["max", "min"]
    record.deadline = time.time() - 1  # search.timeout has passed: no new trials, the running ones finish
    assert searcher.suggest("third") == Searcher.FINISHED and len(record.study.trials) == 2
