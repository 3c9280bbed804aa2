"""Optional dependencies as extras (``nas.extras``): a missing one is one line naming the extra, exit code 2; the
main job needs none of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nas.cli import main
from nas.errors import NasError
from nas.extras import EXTRAS, MissingExtra, require


def _block(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail as it does where the package is not installed."""
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_require_names_the_extra_when_its_package_is_missing(monkeypatch, extra):
    _block(monkeypatch, EXTRAS[extra][0])
    with pytest.raises(MissingExtra) as error:
        require(extra, "the feature")
    assert isinstance(error.value, NasError)
    assert str(error.value) == (
        f"the feature needs the optional dependency {extra!r} ({EXTRAS[extra][0]} is not installed): "
        f"pip install 'nas[{extra}]'"
    )


def test_require_returns_the_modules_when_installed():
    pytest.importorskip("fvcore")
    assert [module.__name__ for module in require("fvcore", "x")] == list(EXTRAS["fvcore"])
    with pytest.raises(ValueError, match="unknown extra"):
        require("nope", "x")


@pytest.mark.parametrize(
    "argv,extra,module",
    [
        (["search", "--space", "convops.yaml", "--backend", "ray"], "ray", "ray"),
        (["submit", "--address", "http://127.0.0.1:9", "--status", "raysubmit_1"], "ray", "ray"),
        (["inspect", "compact:ConvOps-S", "--counter", "fvcore"], "fvcore", "fvcore"),
    ],
)
def test_cli_exits_2_naming_the_extra(monkeypatch, capsys, argv, extra, module):
    _block(monkeypatch, module)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pip install 'nas[{extra}]'" in err[0] and "Traceback" not in err[0]


def test_the_main_job_imports_without_the_extras():
    """``nas search`` (local), ``report``, ``export``, ``inspect`` and ``scale`` import nothing of Ray or fvcore."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None
        sys.modules["fvcore"] = None
        import nas.cli.search_cmd, nas.cli.report_cmd, nas.cli.export_cmd, nas.cli.inspect_cmd, nas.cli.scale_cmd
        import nas.search.local, nas.search.report, nas.trial, nas.export, nas.cost, nas.data
        from nas.cli import main
        sys.exit(main(["validate", "convops.yaml"]))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
