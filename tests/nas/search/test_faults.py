"""Faults a user will cause: kill -9 and Ctrl-C in the middle of a trial. Nothing finished is lost; the same
command resumes, retrying the interrupted trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.search.study import load_existing_study

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(space: str, study_dir: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "nas",
        "search",
        "--space",
        space,
        "--study-dir",
        str(study_dir),
        "--trials",
        "2",
        "--set",
        "train.epochs=15",
        "--no-plots",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(study_dir: Path, trial: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    log = study_dir / "trials" / str(trial) / "log.txt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and "epoch 2/" in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"search ended early: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("trial never reached epoch 2")


def states(study_dir: Path) -> dict[int, str]:
    _, study = load_existing_study(study_dir)
    return {t.number: t.state.name for t in study.get_trials()}


@pytest.mark.parametrize(
    "signal_number,expected_rc", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)]
)
def test_interrupt_then_resume(tiny_space, tmp_path, signal_number, expected_rc):
    space, study_dir = tiny_space(), tmp_path / "study"
    proc = start(space, study_dir)
    wait_for_epoch(study_dir, 1, proc)
    os.kill(proc.pid, signal_number)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == expected_rc, stderr
    if signal_number == signal.SIGINT:
        assert "interrupted" in stderr and "Traceback" not in stderr
    _, study = load_existing_study(study_dir)
    first = study.get_trials()[0]
    assert first.state.name == "COMPLETE" and (study_dir / "trials" / "0" / "weights.pt").exists()
    assert study.get_trials()[1].state.name in ("RUNNING", "FAIL")  # RUNNING after kill -9, FAIL after Ctrl-C

    rerun = start(space, study_dir)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    _, study = load_existing_study(study_dir)
    trials = study.get_trials()
    assert trials[0].values == first.values  # nothing finished is lost
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs["interrupted"]
    retry = trials[2]
    assert (
        retry.user_attrs["retry_of"] == 1
        and retry.params == trials[1].params
        and retry.state.name == "COMPLETE"
    )
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert "retrying interrupted trials [1]" in out
