"""Ray clusters for the tests, started and always stopped by the fixtures in conftest.py: a real head and a second worker node on this
machine (``ray start --block``), addressed on 127.0.0.1 only, with token authentication.

Every process a cluster starts is a descendant of its ``ray start --block`` processes; teardown sends those
SIGTERM (Ray then stops the node's processes), waits, and kills any descendant still alive by its pid. Nothing
is stopped by name (``ray stop`` would stop every Ray cluster of this user on the machine).

Ray 2.60 maps a node address of 127.0.0.1 to the host's primary address internally (its
``resolve_ip_for_localhost``) and its GCS and raylets listen on all interfaces; the tests themselves address only
127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.tiny_space import tiny_space

REPO = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"

# The tiny space of tests/nas/search with 2 epochs, and one whose epochs take a moment (so a test can act in the
# middle of a trial).
TINY = tiny_space(epochs=2)
SLOW = tiny_space(
    name="slow", samples=1200, epochs=10, conv_lora=False, search="{trials: 2, startup_trials: 2, seed: 0}"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def descendants(pids: list[int]) -> set[int]:
    """Every live process below ``pids`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    stack = list(pids)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def mentioning(text: str | Path) -> set[int]:
    """Processes whose command line contains ``text`` (Ray's daemons name their session directory)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if str(text) in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                    found.add(int(entry))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class RayCluster:
    gcs_port: int
    dashboard_port: int
    token: str
    env: dict[str, str]
    temp_dir: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)
    logs_open: list = field(default_factory=list)

    @property
    def dashboard(self) -> str:
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        return f"{LOOPBACK}:{self.gcs_port}"

    def processes(self) -> set[int]:
        """The node processes, everything below them, and any process naming this cluster's temp dir."""
        return (
            {n.pid for n in self.nodes} | descendants([n.pid for n in self.nodes]) | mentioning(self.temp_dir)
        )

    def api(self, path: str) -> dict:
        request = urllib.request.Request(
            self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def alive_nodes(self) -> int:
        nodes = self.api("/api/v0/nodes?limit=100")["data"]["result"]["result"]
        return sum(1 for n in nodes if n["state"] == "ALIVE")

    def start_node(self, *arguments: str, num_cpus: int = 1) -> None:
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            "--node-ip-address",
            LOOPBACK,
            "--num-cpus",
            str(num_cpus),
            "--temp-dir",
            str(self.temp_dir),
            "--disable-usage-stats",
            *arguments,
        ]
        log = open(self.temp_dir / f"node{len(self.nodes)}.log", "w")
        self.logs_open.append(log)
        self.nodes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def wait_for(self, nodes: int, timeout: float = 150.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in self.nodes:
                if node.poll() is not None:
                    raise RuntimeError(f"a Ray node exited: {self.logs()}")
            try:
                if self.alive_nodes() >= nodes:
                    return
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"the Ray cluster did not come up with {nodes} nodes in {timeout}s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.temp_dir.glob("node*.log")))

    def stop(self) -> None:
        tree = self.processes()
        for node in reversed(self.nodes):
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        deadline = time.time() + 20
        while any(alive(pid) for pid in tree) and time.time() < deadline:
            time.sleep(0.5)
        for pid in tree:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for log in self.logs_open:
            log.close()


def cluster_env(token: str) -> dict[str, str]:
    """What the cluster and its clients run with: token auth, this interpreter's tools first on PATH, this
    checkout importable (the job's ``python -m nas`` and the trials use the code under test)."""
    env = dict(os.environ)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.pop("RAY_ADDRESS", None)
    return env
