"""A worker node dies mid-run (ray.cluster_utils.Cluster: several raylets on this machine) and the run still ends
with exactly the clips of an uninterrupted run.

The node removed is one running the cut (which also computes the CPU scores, ``scores.at_cut``) after its first
video: the test waits on that condition (the task's first busy record, whose pid leads to its raylet), never on a
sleep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import store
from pipeline.testdata import make_video

# the run's settings: no CLIP or caption stage (the test looks at neither; with no weights here both are skipped
# after a model check that costs each run seconds)
RUN = {
    "store.stream_rows": "2",
    "clips.max_s": "3",
    "clips.num_cpus": "2",  # a cut task holds a whole node: the removed node is cutting its next video
    "ray.progress": "false",
    "clip.enabled": "false",
    "captioner.model": "none",
}


def _cli(corpus: Path, out: Path, address: str) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--input", str(corpus), "--output", str(out)]
    cmd += ["--address", address]
    for key, value in RUN.items():
        cmd += [f"--{key}", value]
    return cmd


def _ppid(pid: int) -> int | None:
    try:
        # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ")"
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _ancestors(pid: int) -> set[int]:
    seen: set[int] = set()
    while pid and pid not in seen and pid != 1:
        seen.add(pid)
        pid = _ppid(pid) or 0
    return seen


def _cutter_pids(out: Path) -> list[int]:
    pids = []
    for f in out.glob("runs/*.busy/*.jsonl"):
        try:
            lines = f.read_text().splitlines()
        except OSError:
            continue
        if any(json.loads(line)["stage"] == "cut" for line in lines if line.strip()):
            pids.append(int(f.stem))
    return pids


def _raylet_pid(node) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


# How soon the head marks a node dead whose raylet stopped answering: 3 failed health checks 1 s apart (Ray's
# defaults: 5 checks 3 s apart, ~15 s of the run doing nothing). A killed raylet refuses the check at once; a live
# but busy one still has the default 10 s to answer each check, so a loaded machine does not lose a live node.
FAST_NODE_DEATH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@pytest.mark.timeout(900)
def test_a_worker_node_removed_mid_run_loses_no_clip(tmp_path, ray_local):
    from ray.cluster_utils import Cluster

    from pipeline import config
    from pipeline.run import run

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):  # distinct content (noise of different seeds): no video is a duplicate of another
        make_video(corpus / f"v{i}.mp4", frames=120, size=(160, 96), pattern="noise", seed=i)
    # the reference: the same settings, uninterrupted, in this process on the session's Ray (the CLI is run(cfg)
    # and a print); the run that loses a node is the CLI on the cluster
    ref = tmp_path / "ref"
    cfg = config.load(None, RUN)
    cfg.inputs, cfg.output = [str(corpus)], str(ref)
    run(cfg)
    want = store.read_table(ref, "clips", columns=["clip_id", "drop_reason"]).sort_by("clip_id").to_pylist()
    assert len(want) >= 8
    # the head schedules nothing (0 CPUs): every task and actor runs on the two worker nodes
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_NODE_DEATH},
    )
    try:
        workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
        cluster.wait_for_nodes()

        out = tmp_path / "out"
        log = tmp_path / "run.log"
        proc = subprocess.Popen(_cli(corpus, out, cluster.address), stdout=log.open("w"), stderr=subprocess.STDOUT)
        victim = None
        deadline = time.time() + 600
        while victim is None and proc.poll() is None and time.time() < deadline:
            for pid in _cutter_pids(out):
                chain = _ancestors(pid)
                victim = next((w for w in workers if _raylet_pid(w) in chain), None)
                if victim is not None:
                    break
            time.sleep(0.05)
        assert victim is not None, "the cut never ran on a worker node before the run ended:\n" + log.read_text()
        cluster.remove_node(victim, allow_graceful=False)  # the raylet and its workers die at once
        assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]

        got = store.read_table(out, "clips", columns=["clip_id", "drop_reason"]).sort_by("clip_id").to_pylist()
        assert got == want  # none lost, none twice, the same decisions
        con = store.open(out)
        assert con.execute("SELECT count(*), count(DISTINCT video_id) FROM videos").fetchone() == (4, 4)

        def scored(root: Path) -> list[str]:
            return sorted(store.read_table(root, "scores", columns=["clip_id"]).column("clip_id").to_pylist())

        assert scored(out) == scored(ref)  # each clip scored once, the lost node's work redone
        cut = con.execute("SELECT clip_path FROM clips WHERE clip_path IS NOT NULL").fetchall()
        assert cut and all((out / p).is_file() for (p,) in cut)
    finally:
        cluster.shutdown()


def test_a_write_task_that_dies_after_its_commit_stores_its_rows_once(tmp_path, ray_local):
    """The failure the node test can meet at random, made certain: the write task's worker dies after its commits and
    before its result reaches the driver. Ray runs the task again on the same rows; the store keeps one copy."""
    import os

    from pipeline import stream

    died = tmp_path / "died"

    class DiesAfterCommit(stream.StoreSink):
        def write(self, blocks, ctx):
            counts = super().write(blocks, ctx)
            if not died.exists():
                died.write_text(str(os.getpid()))
                os._exit(1)  # the worker process ends here: Ray sees a system failure and retries the task
            return counts

    rows = [
        {
            "clips": {"clip_id": f"c{i}", "video_id": "v0", "clip_path": f"clips/c{i}.mp4"},
            "scores": {"clip_id": f"c{i}", "motion": float(i)},
        }
        for i in range(6)
    ]
    out = tmp_path / "out"
    sink = DiesAfterCommit(str(out), store.StoreConfig(), 6)
    ray_local.data.from_arrow(stream.from_rows(rows)).repartition(1).write_datasink(sink)
    assert died.exists()  # the first attempt did die after committing
    for table in ("clips", "scores"):
        ids = store.read_table(out, table, columns=["clip_id"]).column("clip_id").to_pylist()
        assert sorted(ids) == [f"c{i}" for i in range(6)], table
    assert store.delta_table(out, "clips").version() == 0  # the retry committed nothing
