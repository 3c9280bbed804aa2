"""Which tests are in the integration tier (used by tests/conftest.py; see its docstring)."""

from __future__ import annotations

from pathlib import Path

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
    "nas/search/test_parallel_budget.py": "searches in parallel processes on one study",
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
