"""Shared test settings, and the two tiers of the suite.

``integration`` marks what needs more than this process: a Ray instance or cluster, searches and exports run in
fresh processes, the torchvision zoo, and every test marked ``slow``. Everything else is the fast tier (unit and
contract tests), which developers run all the time: ``python -m pytest -m "not integration"``. CI and the
README's command run both tiers. A module (or one test) is placed by its path in ``tests/tiers.py``, so a test file
need not say which tier it is in; a test can also mark itself with ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os

import pytest
import torch
from tiers import integration_reason

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "originalname", None) or item.name
        if integration_reason(item.path, function) is not None or item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.integration)
