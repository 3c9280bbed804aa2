"""Against a real two-node Ray cluster on this machine (head + worker, token authentication): a search submitted
with ``nas submit`` runs across both nodes and ``nas report`` reads it; a worker killed in the middle of a trial
is retried from its checkpoint; a stopped job resumes when submitted again."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.errors import NasError
from nas.search.study import load_existing_study

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the cluster fixtures read /proc"),
    pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning"),  # Ray's job log stream
]


def submit(cluster, space: Path, study_dir: Path, *extra: str) -> list[str]:
    return [
        "--debug",
        "submit",
        "--address",
        cluster.dashboard,
        "--space",
        str(space),
        "--working-dir",
        str(space.parent),
        "--study-dir",
        str(study_dir),
        "--no-plots",
        *extra,
    ]


def trials(study_dir: Path) -> list:
    if not (study_dir / "journal.log").exists():
        return []
    try:
        _, study = load_existing_study(study_dir)
    except NasError:  # the journal exists a moment before the driver has created the study in it
        return []
    return study.get_trials()


def wait_for_running_epoch(study_dir: Path, epoch: int, timeout: float = 240.0):
    """The first trial that is RUNNING and has reported ``epoch`` (its checkpoint is stored by then)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for trial in trials(study_dir):
            if trial.state.name == "RUNNING" and trial.user_attrs.get("epoch", 0) >= epoch:
                return trial
        time.sleep(0.3)
    raise AssertionError(
        f"no trial reached epoch {epoch} in {timeout}s: {[t.user_attrs for t in trials(study_dir)]}"
    )


@pytest.fixture
def client_token(ray_cluster, monkeypatch):
    """The client reads the token from the environment, as a user would set it."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_cluster.token)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    return ray_cluster.token


def test_submit_runs_across_both_nodes_and_report_reads_it(
    ray_cluster, client_token, slow_space, tmp_path, capsys
):
    space, study_dir = slow_space(), tmp_path / "study"
    code = main(
        submit(
            ray_cluster, space, study_dir, "--set", "search.parallel=2", "--set", "train.epochs=2", "--wait"
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, out[-3000:] + err[-3000:]
    assert client_token not in out + err
    job_id = out.splitlines()[0]
    assert job_id.startswith("raysubmit_") and "Pareto front" in out

    assert main(["report", "--study", str(study_dir), "--json", "--no-plots"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [t["number"] for t in report["trials"]] == [0, 1]
    assert {t["state"] for t in report["trials"]} == {"complete"} and report["pareto"]
    done = trials(study_dir)
    assert len({t.user_attrs["node"] for t in done}) == 2  # both nodes ran trials
    for trial in done:
        folder = study_dir / "trials" / str(trial.number)
        assert json.loads((folder / "candidate.json").read_text()) == trial.user_attrs["candidate"]
        assert json.loads((folder / "metrics.json").read_text())["flops"] == trial.values[1]
        assert (folder / "weights.pt").exists() and "epoch 2/2" in (folder / "log.txt").read_text()

    assert main(["submit", "--address", ray_cluster.dashboard, "--status", job_id]) == 0
    assert f"{job_id}: SUCCEEDED" in capsys.readouterr().out


def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint(
    ray_cluster, client_token, slow_space, tmp_path, capsys
):
    space, study_dir = slow_space(), tmp_path / "study"
    assert main(submit(ray_cluster, space, study_dir, "--set", "search.parallel=2")) == 0
    job_id = capsys.readouterr().out.splitlines()[0]
    victim = wait_for_running_epoch(study_dir, epoch=2)
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    assert pid in ray_cluster.processes()  # a process of this test's cluster, nothing else
    os.kill(pid, signal.SIGKILL)

    code = main(["submit", "--address", ray_cluster.dashboard, "--logs", job_id, "--wait"])
    out, err = capsys.readouterr()
    assert code == 0, out[-3000:] + err[-3000:]
    assert f"trial {victim.number}: " in out and "retrying from its last checkpoint" in out
    done = trials(study_dir)
    assert [(t.number, t.state.name) for t in done] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
    ]  # every trial accounted for
    retried = done[victim.number]
    assert (
        retried.user_attrs["worker_failures"] == 1
        and retried.user_attrs["worker"] != victim.user_attrs["worker"]
    )
    assert retried.user_attrs["metrics"]["resumed_from_epoch"] >= 2
    assert (
        "resumed from the checkpoint of epoch"
        in (study_dir / "trials" / str(victim.number) / "log.txt").read_text()
    )


def test_a_stopped_job_resumes_when_submitted_again(ray_cluster, client_token, slow_space, tmp_path, capsys):
    space, study_dir = slow_space(), tmp_path / "study"
    assert main(submit(ray_cluster, space, study_dir, "--trials", "1")) == 0
    job_id = capsys.readouterr().out.splitlines()[0]
    interrupted = wait_for_running_epoch(study_dir, epoch=2)
    assert main(["submit", "--address", ray_cluster.dashboard, "--stop", job_id]) == 0
    assert main(["submit", "--address", ray_cluster.dashboard, "--logs", job_id, "--wait"]) == 130
    capsys.readouterr()
    assert trials(study_dir)[interrupted.number].state.name == "RUNNING"  # not finished, not lost

    code = main(submit(ray_cluster, space, study_dir, "--trials", "1", "--wait"))
    out, err = capsys.readouterr()
    assert code == 0, out[-3000:] + err[-3000:]
    assert "resuming the interrupted Ray Tune experiment run-1" in out
    done = trials(study_dir)
    assert [(t.number, t.state.name) for t in done] == [(0, "COMPLETE")]
    assert done[0].user_attrs["metrics"]["resumed_from_epoch"] >= 2


def test_a_wrong_token_is_refused_and_never_printed(ray_cluster, slow_space, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    wrong = "0" * 32
    code = main(submit(ray_cluster, slow_space(), tmp_path / "study", "--token", wrong))
    err = capsys.readouterr().err
    assert code == 2 and ray_cluster.dashboard in err and wrong not in err
    assert "Authentication" in err or "401" in err or "403" in err
