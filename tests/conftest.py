"""Shared test settings, and the two tiers of the suite.

``integration`` marks what needs more than this process: a Ray instance or cluster, searches and exports run in
fresh processes, the torchvision zoo, and every test marked ``slow``. Everything else is the fast tier (unit and
contract tests), which developers run all the time: ``python -m pytest -m "not integration"``. CI and the
README's command run both tiers. A module is placed here by its path, so a test file need not say which tier it
is in; a test can also mark itself with ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
torch.set_num_threads(min(2, torch.get_num_threads()))

TESTS = Path(__file__).resolve().parent

# Path relative to tests/ (a folder, a file, or file::test for one test function) -> why it is an integration test.
INTEGRATION = {
    "nas/ray": "Ray: a local instance or a two-node cluster",
    "nas/export/test_export_models.py": "exports verified in a fresh Python process",
    "nas/export/test_export_study.py": "searches, then exports verified in a fresh Python process",
    "nas/export/test_verify.py": "exports verified in a fresh Python process",
    "nas/search/test_faults.py": "searches in subprocesses, interrupted and killed",
    "nas/search/test_early_stopping_search.py": "searches in subprocesses",
    "nas/search/test_local_search.py": "whole searches with training",
    "nas/search/test_baselines.py::test_baselines_run_first_once_per_scale_and_survive_resume": "a whole search, resumed",
    "nas/search/test_space.py::test_validate_cli_exit_codes": "nas validate in subprocesses",
    "nas/test_train_run.py": "nas train runs, killed and resumed in subprocesses, exports verified in a fresh process",
    "nas/test_zoo.py": "the torchvision zoo",
    "nas/scaling/test_scaling_zoo.py": "the torchvision zoo",
}


def integration_reason(path: Path, function: str = "") -> str | None:
    """Why the test ``function`` of the module at ``path`` is in the integration tier, or None for the fast tier."""
    try:
        relative = path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None
    for key, reason in INTEGRATION.items():
        where, _, name = key.partition("::")
        if (relative == where or relative.startswith(where.rstrip("/") + "/")) and name in ("", function):
            return reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "originalname", None) or item.name
        if integration_reason(item.path, function) is not None or item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.integration)
