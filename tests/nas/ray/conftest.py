"""Fixtures: a real two-node Ray cluster for a test module, and the spaces the Ray tests search."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from raytest_cluster import LOOPBACK, SLOW, TINY, RayCluster, cluster_env, free_port


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """A head (1 CPU) and a worker node (1 CPU) on this machine; stopped after the module, also on failure."""
    token = secrets.token_hex(16)
    temp_dir = Path(tempfile.mkdtemp(prefix="nasray", dir="/tmp"))  # short: Ray's socket paths are limited
    cluster = RayCluster(free_port(), free_port(), token, cluster_env(token), temp_dir)
    try:
        cluster.start_node(
            "--head",
            "--port",
            str(cluster.gcs_port),
            "--dashboard-host",
            LOOPBACK,
            "--dashboard-port",
            str(cluster.dashboard_port),
            "--ray-client-server-port",
            str(free_port()),
        )
        cluster.wait_for(nodes=1)
        cluster.start_node("--address", cluster.gcs_address)
        cluster.wait_for(nodes=2)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def slow_space(tmp_path: Path):
    def make(extra: str = "") -> Path:
        path = tmp_path / "space.yaml"
        path.write_text(SLOW + textwrap.dedent(extra))
        return path

    return make


@pytest.fixture
def tiny_space(tmp_path: Path):
    def make(extra: str = "") -> Path:
        path = tmp_path / "tiny.yaml"
        path.write_text(TINY + textwrap.dedent(extra))
        return path

    return make
