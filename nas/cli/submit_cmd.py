"""``nas submit``: run a search on a Ray cluster as a Ray Job (Ray's Jobs API), and look after the job."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import NasError
from ..extras import require

EXAMPLES = """\
examples:
  nas submit --address http://HEAD:8265 --space convops.yaml            submit; prints the job id
  nas submit --address http://HEAD:8265 --space my.yaml --set search.parallel=4 --wait   follow the logs
  nas submit --address http://HEAD:8265 --status ID | --logs ID [--wait] | --stop ID

The job runs `nas search --backend ray --address auto` on the head node, in a copy of the working directory
(default: the current one, .gitignore respected; the space file must lie inside it unless it is a built-in
space). The study directory (default: studies/<name> here, made absolute) is where the job writes: to read the
results here with `nas report --study DIR`, it must be on a filesystem this machine and the cluster share, or
set an Optuna storage URL (`storage:` in the space or --storage, e.g. postgresql://user@db/nas). Submitting the
same search again resumes it.

Token authentication (`ray start --head` turns it on by default in Ray 2.60): the token comes from --token,
else RAY_AUTH_TOKEN, else the file at RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; it is sent as a bearer header and
never printed. Prefer the environment: a flag is visible to other users of this machine in the process list.
--wait exits with the job's status: 0 succeeded, the search's exit code when it failed (1 if unknown), 130 when
the job was stopped. A cluster that cannot be reached: exit 2.
"""

DEFAULT_DASHBOARD_PORT = 8265
CONNECT_TIMEOUT_S = 10.0
ALWAYS_EXCLUDED = [".git", ".venv", "__pycache__"]
# --stop interrupts the search as Ctrl-C does (Tune saves the experiment; a resubmit resumes it).
JOB_ENV = {"PYTHONUNBUFFERED": "1", "RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="run a search on a Ray cluster as a Ray Job; job status, logs, stop",
        description="Submit `nas search --backend ray` to a running Ray cluster through Ray's Jobs API.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS"),
        metavar="URL",
        help="the cluster's dashboard, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS)",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--space", metavar="SPACE", help="submit the search of this space file or built-in space"
    )
    action.add_argument("--status", metavar="ID", help="print a job's status")
    action.add_argument("--logs", metavar="ID", help="print a job's logs (follow them with --wait)")
    action.add_argument("--stop", metavar="ID", help="stop a job (the search resumes when submitted again)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a key of the space, repeatable (as in nas search)",
    )
    parser.add_argument("--trials", type=int, help="number of trials (= --set search.trials=N)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument(
        "--study-dir", metavar="DIR", help="where the job writes the study (default: studies/<name>)"
    )
    parser.add_argument(
        "--storage", metavar="URL", help="an Optuna storage URL the job and this machine reach"
    )
    parser.add_argument(
        "--working-dir", metavar="DIR", help="the directory shipped with the job (default: .)"
    )
    parser.add_argument("--no-plots", action="store_true", help="the job writes no plots")
    parser.add_argument(
        "--wait", action="store_true", help="follow the logs until the job ends; exit with its status"
    )
    parser.add_argument(
        "--token", metavar="TOKEN", help="Ray auth token (default: $RAY_AUTH_TOKEN, ~/.ray/auth_token)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.address:
        raise NasError(
            "--address: the cluster's dashboard address is required, e.g. --address http://HEAD:8265"
        )
    dashboard_url(args.address)
    require("ray", "nas submit")
    token = auth_token(args.token)
    try:
        submission = Submission.prepare(args) if args.space else None  # a bad space fails before any contact
        client = connect(args.address, token)
        if args.status:
            return _print_status(client, args.status)
        if args.stop:
            stopped = _call(client.stop_job, args.stop)
            print(f"{args.stop}: {'stop requested' if stopped else 'not running'}")
            return 0
        if args.logs:
            if args.wait:
                return _follow(client, args.logs)
            print(_call(client.get_job_logs, args.logs), end="")
            return 0
        return _submit(client, args, submission)
    except NasError as error:
        raise NasError(_scrub(str(error), token)) from None


# -- the cluster --------------------------------------------------------------------------------------------
def auth_token(flag: str | None) -> str | None:
    """The Ray auth token: --token, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token (Ray's own order)."""
    if flag:
        return flag.strip()
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def dashboard_url(address: str) -> str:
    url = address if "://" in address else f"http://{address}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NasError(
            f"--address {address!r}: expected the dashboard's http://HOST:PORT (e.g. http://HEAD:8265)"
        )
    return url.rstrip("/")


def connect(address: str, token: str | None) -> Any:
    """A JobSubmissionClient for ``address``; an unreachable cluster is a NasError naming it and the reason."""
    url = dashboard_url(address)
    parts = urlsplit(url)
    port = parts.port or (DEFAULT_DASHBOARD_PORT if parts.scheme == "http" else 443)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise NasError(f"cannot reach the Ray cluster at {url}: {error.strerror or error}") from None
    from ray.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except Exception as error:  # ConnectionError, AuthenticationError (401/403), version errors
        raise NasError(f"cannot reach the Ray cluster at {url}: {_first_line(error)}") from None


def _call(method, *args: Any) -> Any:
    try:
        return method(*args)
    except RuntimeError as error:  # the job server's answer, e.g. no such job
        raise NasError(_first_line(error)) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


# -- submit -------------------------------------------------------------------------------------------------
def job_entrypoint(args: argparse.Namespace, space_argument: str, study_dir: Path) -> str:
    from .search_cmd import space_overrides

    debug = (
        ["--debug"] if getattr(args, "debug", False) else []
    )  # `nas --debug submit`: tracebacks in the logs
    command = [
        "python",
        "-m",
        "nas",
        *debug,
        "search",
        "--space",
        space_argument,
        "--backend",
        "ray",
        "--address",
        "auto",
        "--study-dir",
        str(study_dir),
    ]
    for override in space_overrides(args):
        command += ["--set", override]
    if args.storage:
        command += ["--storage", args.storage]
    if args.no_plots:
        command.append("--no-plots")
    return shlex.join(command)


def _space_argument(space: str, working_dir: Path) -> str:
    """How the job names the space: a path relative to the shipped working directory, or a built-in name."""
    path = Path(space)
    if not path.is_file():
        return space  # a built-in space (load_space already checked the name)
    try:
        return str(path.resolve().relative_to(working_dir))
    except ValueError:
        raise NasError(
            f"{space}: the space file is outside the working directory {working_dir} that is shipped "
            f"to the cluster; move it inside or pass --working-dir"
        ) from None


@dataclass(frozen=True)
class Submission:
    """The job for ``args``: checked here (space, working directory) before the cluster is contacted."""

    name: str
    storage: str | None
    study_dir: Path
    entrypoint: str
    runtime_env: dict[str, Any]

    @staticmethod
    def prepare(args: argparse.Namespace) -> Submission:
        from ..search.study import default_study_dir
        from ..space import load_space
        from .search_cmd import space_overrides

        space = load_space(args.space, space_overrides(args))
        working_dir = Path(args.working_dir or ".").resolve()
        if not working_dir.is_dir():
            raise NasError(f"--working-dir {args.working_dir}: not a directory")
        study_dir = (
            Path(args.study_dir).resolve() if args.study_dir else Path.cwd() / default_study_dir(space)
        )
        excludes = list(ALWAYS_EXCLUDED)
        if study_dir.is_relative_to(working_dir):  # the job writes there; it is not shipped
            excludes.append("/" + str(study_dir.relative_to(working_dir)))
        entrypoint = job_entrypoint(args, _space_argument(args.space, working_dir), study_dir)
        runtime_env = {"working_dir": str(working_dir), "excludes": excludes, "env_vars": dict(JOB_ENV)}
        return Submission(space.name, args.storage or space.storage, study_dir, entrypoint, runtime_env)


def _submit(client: Any, args: argparse.Namespace, job: Submission) -> int:
    try:
        job_id = client.submit_job(
            entrypoint=job.entrypoint, runtime_env=job.runtime_env, metadata={"nas_study": job.name}
        )
    except Exception as error:
        raise NasError(f"the cluster refused the job: {_first_line(error)}") from None
    print(job_id, flush=True)
    print(
        f"study directory: {job.study_dir}   (nas submit --status {job_id} | --logs {job_id} | --stop {job_id})",
        file=sys.stderr,
    )
    if not args.wait:
        return 0
    code = _follow(client, job_id)
    if code == 0 and not job.storage and not (job.study_dir / "journal.log").exists():
        print(
            f"note: {job.study_dir} is not visible here (not a shared filesystem?); the report is in the logs "
            f"above",
            file=sys.stderr,
        )
    return code


# -- status and logs ----------------------------------------------------------------------------------------
def _print_status(client: Any, job_id: str) -> int:
    info = _call(client.get_job_info, job_id)
    print(f"{job_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
    return 0


def _follow(client: Any, job_id: str) -> int:
    """Stream the job's logs until it ends; its status as an exit code."""
    _call(client.get_job_info, job_id)  # a job that does not exist: one clear line

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} goes on (nas submit --stop {job_id} stops it)",
            file=sys.stderr,
        )
        return 130
    info = _call(client.get_job_info, job_id)
    while not info.status.is_terminal():  # the log stream can close a moment before the status turns
        time.sleep(0.5)
        info = _call(client.get_job_info, job_id)
    status = info.status.value
    print(f"job {job_id}: {status}" + (f" ({info.message})" if info.message else ""), file=sys.stderr)
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return 130
    exit_code = getattr(info, "driver_exit_code", None)
    return exit_code if isinstance(exit_code, int) and exit_code > 0 else 1
