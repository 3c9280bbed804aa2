"""The two tiers (tests/tiers.py, tests/conftest.py): what is placed in ``integration`` and what stays in the fast tier."""

from __future__ import annotations

from pathlib import Path

from tiers import INTEGRATION, TESTS, integration_reason


def test_paths_functions_and_the_fast_tier():
    assert integration_reason(TESTS / "nas" / "ray" / "test_ray_cli.py") == INTEGRATION["nas/ray"]
    assert integration_reason(TESTS / "nas" / "test_zoo.py") is not None
    space = TESTS / "nas" / "search" / "test_space.py"
    assert integration_reason(space, "test_validate_cli_exit_codes") is not None
    assert integration_reason(space, "test_something_else") is None
    assert integration_reason(TESTS / "operators" / "test_contract.py") is None
    assert (
        integration_reason(TESTS / "nas" / "raytest_elsewhere.py") is None
    )  # a prefix of a name is no match
    assert integration_reason(Path("/elsewhere/test_x.py")) is None


def test_the_committed_integration_folders_exist():
    for key in ("nas/ray", "nas/test_zoo.py", "nas/scaling/test_scaling_zoo.py", "nas/export/test_verify.py"):
        assert (TESTS / key).exists(), key
