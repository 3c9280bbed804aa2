"""A tiny trained study (synthetic 8x8 data, a compact CNN of 8 channels scaled 2x in flops, 1 epoch, 3 trials) shared
by the export tests, and helpers to copy it and add trials of a given state."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.tiny_space import tiny_space

TINY = tiny_space(
    scaling="scaling: {rule: dWr, factor: [2]}\n", search="{trials: 3, startup_trials: 3, seed: 0}"
)


@pytest.fixture(scope="session")
def trained_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study directory (3 completed trials with weights); do not modify it (copy it first)."""
    from nas.search.local import run_local
    from nas.search.progress import SearchProgress
    from nas.space import load_space

    root = tmp_path_factory.mktemp("export-study")
    (root / "space.yaml").write_text(TINY)
    space = load_space(str(root / "space.yaml"), [])
    study_dir = root / "study"
    run_local(space, study_dir, SearchProgress(space.name, [o.metric for o in space.objectives], live=False))
    return study_dir


@pytest.fixture
def study_copy(trained_study: Path, tmp_path: Path) -> Path:
    """A copy of the trained study this test may change."""
    return Path(shutil.copytree(trained_study, tmp_path / "study"))


@pytest.fixture
def add_trial():
    """``add_trial(study_dir, state, **user_attrs)``: add a trial in ``state`` to a study; returns its number."""
    from nas.search.study import load_existing_study

    def add(study_dir: Path, state: TrialState, **user_attrs) -> int:
        _, study = load_existing_study(study_dir)
        values = [0.9, 100.0] if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=user_attrs))
        return study.get_trials(deepcopy=False)[-1].number

    return add
