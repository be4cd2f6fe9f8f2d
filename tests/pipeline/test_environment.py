"""Errors of the environment stop the run loudly and a rerun redoes exactly the lost work (stages/errors.py).

The disk-full test runs the real CLI with OUT on a real, small tmpfs that fills mid-run, then grows it and reruns
the same command. Mounting needs root (CAP_SYS_ADMIN); elsewhere that test is skipped with the reason, and the
classification tests below (a real ENOSPC from /dev/full, real corrupt input, a real Ray task) still run.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import store
from pipeline.testdata import make_video
from stages.errors import EXIT_ENVIRONMENT, EnvironmentFault, environment_cause, find_fault, raise_if_environment


def _enospc_from_pyav() -> BaseException:
    """The exception PyAV/FFmpeg really raise when the output device is full (/dev/full answers ENOSPC)."""
    try:
        with av.open("/dev/full", "w", format="mp4") as c:
            s = c.add_stream("libx264", rate=24)
            s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
            rng = np.random.default_rng(0)
            for i in range(48):
                f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (64, 64, 3), np.uint8), format="rgb24")
                f.pts = i
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
    except Exception as e:  # noqa: BLE001 - the error under test
        return e
    raise AssertionError("writing to /dev/full did not fail")


def test_a_full_device_is_the_environment_and_a_corrupt_input_is_the_clip(tmp_path):
    full = _enospc_from_pyav()
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    assert environment_cause(full) is full
    with pytest.raises(EnvironmentFault, match="No space left") as info:
        raise_if_environment(full, "cut x.mp4")
    assert info.value.__cause__ is full
    # wrapped by whatever the stage raised on top of it: still found through the chain
    try:
        try:
            raise full
        except OSError as e:
            raise RuntimeError("encoder failed") from e
    except RuntimeError as wrapped:
        assert environment_cause(wrapped) is full

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    with pytest.raises(Exception) as bad:  # noqa: PT011 - whatever FFmpeg says about garbage
        av.open(str(corrupt)).decode(video=0).__next__()
    assert environment_cause(bad.value) is None
    raise_if_environment(bad.value, "probe")  # an input error: returns, the caller records it
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "gone.mp4"))
    assert environment_cause(missing) is None
    assert environment_cause(MemoryError()) is not None


def test_a_full_disk_under_the_table_format_is_the_environment(tmp_path):
    """delta-rs (Rust) reports a full disk as a ``DeltaError`` whose text carries the errno ("(os error 28)"): it is
    the environment's, and a failed commit leaves the table as it was."""
    import numpy as np
    import pyarrow as pa

    from pipeline import store

    small = tmp_path / "small"
    small.mkdir()
    why = _mount_tmpfs(small, 256)
    if why:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {why}")
    try:
        store._commit(small, "clips", pa.table({"clip_id": ["a"]}), "append")
        with pytest.raises(Exception) as full:  # noqa: PT011 - whatever delta-rs raises
            store._commit(
                small,
                "clips",
                pa.table({"clip_id": [os.urandom(8).hex() for _ in range(200_000)], "x": np.random.rand(200_000)}),
                "append",
            )
        assert not isinstance(full.value, OSError)  # not an OSError: found by its text
        assert environment_cause(full.value) is full.value
        assert store.read_table(small, "clips").column("clip_id").to_pylist() == ["a"]
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
    assert environment_cause(ValueError("bad frame (os error 5)")) is None  # EIO: the input's, as for PyAV
    # delta-rs raises OSError without an errno for an object store it cannot reach; the text carries it
    unreachable = OSError("Generic S3 error: error sending request: Connection refused (os error 111)")
    assert environment_cause(unreachable) is unreachable
    assert environment_cause(OSError(errno.ENOENT, "No such file or directory")) is None


def test_the_driver_finds_the_fault_through_ray(ray_local):
    @ray_local.remote(max_retries=0)
    def cut():
        raise_if_environment(_enospc_from_pyav(), "cut v.mp4")

    with pytest.raises(Exception) as info:  # noqa: PT011 - Ray's wrapper type is Ray's business
        ray_local.get(cut.remote())
    assert "No space left on device" in find_fault(info.value)
    assert find_fault(ValueError("a bug")) is None


# the disk-full runs' settings: no CLIP or caption stage (the test looks at neither; with no weights here both are
# skipped after a model check that costs each run seconds)
DISK_RUN = {
    "store.stream_rows": "2",
    "clips.max_s": "3",
    "ray.progress": "false",
    "clip.enabled": "false",
    "captioner.model": "none",
}


def _cli(corpus: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--input", str(corpus), "--output", str(out)]
    cmd += ["--ray.num_cpus", "2"]
    for key, value in DISK_RUN.items():
        cmd += [f"--{key}", value]
    return cmd


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _mount_tmpfs(where: Path, size_kb: int) -> str | None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)], capture_output=True)
    return None if r.returncode == 0 else (r.stderr.decode() or "mount failed").strip()


def test_a_disk_that_fills_mid_run_stops_it_and_the_rerun_loses_nothing(tmp_path, bikes, ray_local):
    from pipeline import config
    from pipeline.run import run

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / bikes.name).symlink_to(bikes)
    for i in range(2):  # noise: incompressible, so the clips fill the disk fast
        make_video(corpus / f"noise_{i}.mp4", frames=120, size=(160, 96), pattern="noise", seed=i)
    # the reference: the same settings, uninterrupted, in this process on the session's Ray (the CLI is run(cfg) and
    # a print); the run that fills the disk and the rerun below are the CLI, each with its own Ray
    ref = tmp_path / "ref"
    cfg = config.load(None, DISK_RUN)
    cfg.inputs, cfg.output = [str(corpus)], str(ref)
    run(cfg)
    want = store.read_table(ref, "clips", columns=["clip_id", "drop_reason"]).sort_by("clip_id").to_pylist()

    small = tmp_path / "small"
    why = _mount_tmpfs(small, max(64, _du(ref) // 1024 // 2))  # half of what the run writes
    if why:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {why}")
    try:
        out = small / "out"
        first = subprocess.run(_cli(corpus, out), capture_output=True, text=True)
        assert first.returncode == EXIT_ENVIRONMENT, first.stderr[-3000:]
        assert "STOPPED by an error of the environment" in first.stderr
        assert "No space left on device" in first.stderr
        # nothing was recorded as the clips' fault
        if store.shard_files(out, "clips"):
            reasons = store.read_table(out, "clips", columns=["drop_reason"]).column("drop_reason").to_pylist()
            assert not [r for r in reasons if r and "OSError" in r]
            assert len(reasons) < len(want), "the disk filled too late to test anything"

        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        second = subprocess.run(_cli(corpus, out), capture_output=True, text=True)
        assert second.returncode == 0, second.stderr[-3000:]
        got = store.read_table(out, "clips", columns=["clip_id", "drop_reason"]).sort_by("clip_id").to_pylist()
        assert got == want  # the same clips, the same decisions, none lost, none twice
        con = store.open(out)
        for (p,) in con.execute("SELECT clip_path FROM kept").fetchall():
            assert (out / p).is_file()
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
