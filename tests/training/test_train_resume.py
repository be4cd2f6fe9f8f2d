"""Exact resume: N steps straight == N/2 steps, kill -9, resume to N - bit for bit, on real footage shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from training.demo import demo_dataset

REPO = Path(__file__).resolve().parents[2]
BIKES = ["bikes_s0", "bikes_s1", "bikes_s2", "bikes_s3", "bikes_s4"]
N = 20  # steps; the kill lands just after the checkpoint at N/2, with N/2 steps still to go


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return demo_dataset(tmp_path_factory.getbasetemp() / "training-demo", names=BIKES)


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "training.train", str(data), "--out", str(out), "--model", "nano",
        "--patch", "1", "4", "4", "--batch-size", "4",
        "--max-steps", str(N), "--ckpt-every", str(N // 2), "--log-every", "2", "--lr", "1e-3", "--threads", "1",
        "--text-dropout", "0.3", "--p-i2v", "0.3", "--p-extend", "0.3", "--no-tensorboard", *extra,
    ]  # fmt: skip


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def test_kill_and_resume_is_bit_identical(shards, tmp_path):
    straight = tmp_path / "straight"
    subprocess.run(_cmd(shards, straight), check=True, cwd=REPO, env=_env(), capture_output=True, timeout=600)

    resumed = tmp_path / "resumed"
    proc = subprocess.Popen(
        _cmd(shards, resumed), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    half = resumed / "checkpoints" / f"step_{N // 2:08d}" / "state.json"
    deadline = time.monotonic() + 300
    while not half.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make steps slower"
    assert half.is_file()
    assert not (resumed / "checkpoints" / f"step_{N:08d}").exists()

    out = subprocess.run(_cmd(shards, resumed, "--resume"), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"at step {N // 2}" in out.stdout

    final = f"checkpoints/step_{N:08d}"
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(straight / final / name), load_file(resumed / final / name)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].equal(b[k]), f"{name}:{k} differs after resume"
    sa, sb = (json.loads((d / final / "state.json").read_text()) for d in (straight, resumed))
    assert sa["cursor"] == sb["cursor"] and sa["step"] == sb["step"] == N
    # and training moved the weights: the comparison is not between two untouched inits
    w6 = load_file(resumed / "checkpoints" / f"step_{N // 2:08d}" / "model.safetensors")
    w12 = load_file(resumed / final / "model.safetensors")
    assert any(not w6[k].equal(w12[k]) for k in w6)


def test_checkpoint_holds_everything_resume_needs(shards, tmp_path):
    from training.train import TrainConfig, train

    out = tmp_path / "run"
    cfg = TrainConfig(data=str(shards), out=str(out), model="nano", batch_size=2, max_steps=2, ckpt_every=1,
                      keep_checkpoints=1, log_every=1, tensorboard=True)  # fmt: skip
    metrics = train(cfg)
    assert metrics["step"] == 2 and metrics["loss"] > 0 and 0 <= metrics["data_wait_pct"] <= 100
    ckpts = sorted((out / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step_00000002"]  # keep_checkpoints=1 pruned step 1
    files = {p.name for p in ckpts[0].iterdir()}
    assert files == {"model.safetensors", "ema.safetensors", "optimizer.pt", "rng.pt", "state.json"}
    state = json.loads((ckpts[0] / "state.json").read_text())
    assert state["codec"] == "pixel" and state["text_encoder"] == "minilm"
    assert state["config"]["batch_size"] == 2 and state["dit"]["in_channels"] == 3
    assert json.loads((out / "config.json").read_text())["model"] == "nano"
    assert any((out / "tb").iterdir())
