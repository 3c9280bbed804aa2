"""``nas submit`` and ``nas search --backend ray`` without a cluster: the job submit builds, where the token comes
from (never printed), and the errors a user gets for an unreachable cluster or a space the job could not see."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest
from raytest_cluster import TINY

from nas.cli import build_parser, main
from nas.cli.submit_cmd import auth_token, job_entrypoint


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "spaces" / "tiny.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(TINY)
    return path


def closed_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_cluster_exits_2_naming_the_address_and_reason(space_file, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-token-123")
    address = f"http://127.0.0.1:{closed_port()}"
    shipped = ["--space", str(space_file), "--working-dir", str(space_file.parents[1])]
    for command in (shipped, ["--status", "raysubmit_x"], ["--stop", "raysubmit_x"]):
        assert main(["submit", "--address", address, *command]) == 2
        err = capsys.readouterr().err
        assert f"cannot reach the Ray cluster at {address}: Connection refused" in err
        assert "secret-token-123" not in err


def test_a_missing_address_and_a_bad_address_are_input_errors(space_file, capsys, monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert main(["submit", "--space", str(space_file)]) == 2
    assert "--address" in capsys.readouterr().err
    assert main(["submit", "--address", "ray://head:10001", "--space", str(space_file)]) == 2
    assert "expected the dashboard's http://HOST:PORT" in capsys.readouterr().err


def test_the_token_comes_from_the_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    token_file = tmp_path / "auth_token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert auth_token("from-flag") == "from-flag"
    assert auth_token(None) == "from-env"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    assert auth_token(None) == "from-file"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert auth_token(None) is None
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert auth_token(None) is None


def test_the_job_runs_the_ray_backend_on_the_cluster_with_the_same_overrides(tmp_path):
    args = build_parser().parse_args(
        [
            "submit",
            "--address",
            "http://h:8265",
            "--space",
            "x.yaml",
            "--set",
            "train.epochs=1",
            "--trials",
            "5",
            "--storage",
            "postgresql://db/nas",
            "--token",
            "secret-token-123",
        ]
    )
    study_dir = tmp_path / "study dir"
    command = shlex.split(job_entrypoint(args, "spaces/x.yaml", study_dir))
    assert command[:4] == ["python", "-m", "nas", "search"]
    assert command[command.index("--space") + 1] == "spaces/x.yaml"
    assert (
        command[command.index("--backend") + 1] == "ray" and command[command.index("--address") + 1] == "auto"
    )
    assert command[command.index("--study-dir") + 1] == str(study_dir)
    assert "train.epochs=1" in command and "search.trials=5" in command and "postgresql://db/nas" in command
    assert "secret-token-123" not in " ".join(command)


def test_the_space_must_ship_with_the_job(space_file, tmp_path, capsys):
    address = f"http://127.0.0.1:{closed_port()}"  # checked before the cluster is contacted
    assert (
        main(
            ["submit", "--address", address, "--space", str(space_file), "--working-dir", str(tmp_path / "x")]
        )
        == 2
    )
    assert "--working-dir" in capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    code = main(
        [
            "submit",
            "--address",
            address,
            "--space",
            str(space_file),
            "--working-dir",
            str(tmp_path / "elsewhere"),
        ]
    )
    assert code == 2 and "outside the working directory" in capsys.readouterr().err
    code = main(["submit", "--address", address, "--space", str(space_file), "--set", "train.epochs=0"])
    assert (
        code == 2 and "epochs" in capsys.readouterr().err
    )  # the space is validated here, not on the cluster


def test_search_on_an_unreachable_cluster_exits_2_at_once(space_file, tmp_path, capsys):
    address = f"127.0.0.1:{closed_port()}"
    study_dir = tmp_path / "study"
    assert (
        main(
            [
                "search",
                "--space",
                str(space_file),
                "--study-dir",
                str(study_dir),
                "--backend",
                "ray",
                "--address",
                address,
            ]
        )
        == 2
    )
    assert f"cannot reach the Ray cluster at {address}: Connection refused" in capsys.readouterr().err
    assert not study_dir.exists()  # nothing written for a search that could not start
