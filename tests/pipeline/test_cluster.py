"""The same command on a running Ray cluster (`ray start --head`), connected with --address."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_on_a_started_cluster_with_address(tmp_path, bikes):
    port = _free_port()
    # Ray >= 2.59 starts clusters with token authentication: head and driver share the token through Ray's
    # own environment variables, as a user's cluster would.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    ray_bin = Path(sys.executable).with_name("ray")
    head_log = tmp_path / "head.log"
    ray_tmp = Path(tempfile.mkdtemp(prefix="cfray", dir="/tmp"))  # unix socket paths must stay < 108 bytes
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--temp-dir={ray_tmp}",
            "--disable-usage-stats",
        ],
        start_new_session=True,
        env=env,
        stdout=head_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in head_log.read_text():
            assert head.poll() is None and time.time() < deadline, head_log.read_text()[-3000:]
            time.sleep(0.05)
        address = f"127.0.0.1:{port}"
        out = tmp_path / "out"
        cmd = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--input",
            str(bikes),
            "--output",
            str(out),
            "--address",
            address,
            "--ray.progress",
            "false",
            # no CLIP or caption stage: the test is about where the run ran, not about them (without weights here
            # both are skipped after a model check that costs the run seconds)
            "--clip.enabled",
            "false",
            "--captioner.model",
            "none",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "kept" in r.stdout
        con = store.open(out)
        starts = [s for (s,) in con.execute("SELECT start_frame FROM clips ORDER BY start_frame").fetchall()]
        assert starts[:5] == [0, 30, 76, 137, 187]
        # the driver really ran on that cluster: its session dir holds this job's logs
        assert any(ray_tmp.rglob("*.log"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
