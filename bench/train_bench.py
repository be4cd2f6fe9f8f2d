"""Training throughput of the DiT on real-footage shards: tokens/s, samples/s, data-wait %, and achieved FLOP/s as
a fraction of a plain fp32 matmul's FLOP/s measured in the same process (a ratio, so noisy shared machines still
give a comparable number).

    .venv/bin/python bench/train_bench.py [--model tiny] [--steps 40] [--size 32] [--frames 8] [--patch 1 4 4]
    .venv/bin/python bench/train_bench.py --scaling [--shards 2 8 32] [--baseline REV]

Writes bench/results/train.json. ``--scaling`` instead measures the data path at scale: synthetic shards of
64 clips each (latents 4x8x64x64 float16, 256 KiB a clip; text 16x384) in growing numbers, each trained for a few
steps in a fresh process; per count it writes the process's peak RSS and the share of step time spent waiting for data
(``data_wait_pct``), and the peak-RSS ratio of the largest count to the smallest (flat = the loader streams the shards
instead of holding them). Writes bench/results/train_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from training.demo import demo_dataset  # noqa: E402
from training.dit import DiT, dit_config  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


def matmul_flops(n: int = 1024, seconds: float = 3.0) -> float:
    """Sustained fp32 FLOP/s of an n x n matmul on this process's threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def flops_per_sample(model: DiT, tokens: int, text_tokens: int) -> float:
    """Training FLOPs for one sample: 6 x (matmul params applied per token) x tokens for the linear layers
    (forward 2, backward 4), plus self-attention's score and value products (4 N^2 D forward per layer, x3)
    and the cross-attention's (4 N L D per layer, x3)."""
    d, depth = model.config.hidden_size, model.config.depth
    per_token = sum(
        p.numel() for n, p in model.named_parameters() if p.dim() == 2 and n.startswith(("blocks", "final"))
    )
    per_token -= sum(b.cross_attn.kv.weight.numel() + b.adaLN_modulation[-1].weight.numel() for b in model.blocks)
    per_token -= model.final_layer.adaLN_modulation[-1].weight.numel()
    per_token += model.x_embedder.proj.weight.numel()
    return 6 * per_token * tokens + 3 * depth * (4 * tokens**2 * d + 4 * tokens * text_tokens * d)


SCALING_DRIVER = r"""
import json, resource, sys
# this process's own peak RSS: /proc's VmHWM (getrusage's ru_maxrss of a child starts at its parent's RSS at the fork,
# on Linux: the bench's own memory used to leak into this figure)
def peak_mb():
    try:
        return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from training.train import TrainConfig, train
cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], model="tiny", patch=[1, 8, 8], batch_size=4, max_steps=8,
                  log_every=4, ckpt_every=10**9, tensorboard=False, lr=1e-4)
m = train(cfg)
print(json.dumps({"peak_rss_mb": peak_mb(),
                  "data_wait_pct": m["data_wait_pct"], "steps_per_s": m["steps_per_s"]}))
"""


def synthetic_shards(dest: Path, n_shards: int, rows: int = 64) -> Path:
    """``n_shards`` training shards of ``rows`` clips with random float16 latents (4, 8, 64, 64), in SHARD_SCHEMA."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data import SHARD_SCHEMA, pack

    (dest / "shards").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for s in range(n_shards):
        recs = []
        for r in range(rows):
            latent, lshape, ldtype = pack(rng.standard_normal((4, 8, 64, 64), np.float32), "float16")
            text, tshape, tdtype = pack(rng.standard_normal((16, 384), np.float32), "float16")
            recs.append({"clip_id": f"s{s:04d}r{r:03d}", "bucket": "8x64x64", "caption": "synthetic",
                         "caption_source": "dense", "latent": latent, "latent_shape": lshape, "latent_dtype": ldtype,
                         "text": text, "text_shape": tshape, "text_dtype": tdtype, "error": None})  # fmt: skip
        pq.write_table(pa.Table.from_pylist(recs, schema=SHARD_SCHEMA), dest / "shards" / f"part-{s:05d}.parquet",
                       row_group_size=16)  # fmt: skip
    return dest


def scaling(counts: list[int], work: Path, baseline: str | None = None) -> dict:
    """Peak RSS and data wait per shard count, for this tree and (``baseline``: a git revision, checked out with
    ``git worktree``) the code before, on the same shards in the same run."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    versions = {"this": root}
    if baseline:
        wt = work / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(wt), baseline], cwd=root, check=True,
                       capture_output=True)  # fmt: skip
        versions["baseline"] = wt
    out: dict = {"rows_per_shard": 64, "latent": [4, 8, 64, 64], "bytes_per_clip": 4 * 8 * 64 * 64 * 2,
                 "baseline": baseline, "runs": {}}  # fmt: skip
    try:
        for n in counts:
            data = synthetic_shards(work / f"shards{n}", n)
            out["runs"][str(n)] = {"shard_bytes_mb": round(sum(f.stat().st_size for f in (data / "shards").iterdir())
                                                           / 2**20, 1)}  # fmt: skip
            for name, code in versions.items():
                res = subprocess.run(
                    [sys.executable, "-c", SCALING_DRIVER, str(data), str(work / f"run{n}-{name}")],
                    capture_output=True, text=True, check=True, cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                )  # fmt: skip
                out["runs"][str(n)][name] = json.loads(res.stdout.strip().splitlines()[-1])
                shutil.rmtree(work / f"run{n}-{name}", ignore_errors=True)
            print(n, out["runs"][str(n)], flush=True)
            shutil.rmtree(data, ignore_errors=True)
    finally:
        if baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(versions["baseline"])], cwd=root)
    lo, hi = out["runs"][str(counts[0])], out["runs"][str(counts[-1])]
    for name in versions:
        out[f"peak_rss_ratio_largest_over_smallest_{name}"] = round(
            hi[name]["peak_rss_mb"] / lo[name]["peak_rss_mb"], 3
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--patch", type=int, nargs=3, default=[1, 4, 4])
    parser.add_argument("--steps", type=int, default=40, help="measured steps (after as many warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--work", default=None, help="scratch dir (default: a temp dir)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--scaling", action="store_true", help="peak RSS and data wait against the number of shards")
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--baseline", default=None, help="with --scaling: git revision of the loader to compare")
    args = parser.parse_args()
    if args.scaling:
        work = Path(args.work or tempfile.mkdtemp(prefix="train-scaling-"))
        result = scaling(sorted(args.shards), work, args.baseline)
        dest = RESULTS.with_name("train_scaling.json") if args.out == str(RESULTS) else Path(args.out)
        dest.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0

    work = Path(args.work or tempfile.mkdtemp(prefix="train-bench-"))
    bucket = {"buckets": [{"frames": args.frames, "height": args.size, "width": args.size}]}
    shards = demo_dataset(work, names=["bikes_s0", "bikes_s1", "bikes_s2", "bikes_s3", "bikes_s4"], buckets=bucket)

    matmul = matmul_flops()
    cfg = TrainConfig(
        data=str(shards), out=str(work / "run"), model=args.model, patch=list(args.patch), batch_size=args.batch_size,
        max_steps=2 * args.steps, log_every=args.steps, ckpt_every=10**9, tensorboard=False, lr=1e-4,
    )  # fmt: skip
    metrics = train(cfg)  # the last window = the measured second half
    matmul_after = matmul_flops()

    model = DiT(dit_config(args.model, in_channels=3, text_dim=384, patch=tuple(args.patch)))
    pt, ph, pw = args.patch
    tokens = -(-args.frames // pt) * -(-args.size // ph) * -(-args.size // pw)
    fps_ = flops_per_sample(model, tokens, text_tokens=16)
    achieved = fps_ * metrics["samples_per_s"]
    matmul_ref = (matmul + matmul_after) / 2
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "config": {
            "model": args.model, "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "patch": args.patch,
            "batch_size": args.batch_size, "latent": [3, args.frames, args.size, args.size],
            "tokens_per_sample": tokens, "measured_steps": args.steps, "codec": "pixel", "precision": "fp32",
        },
        "steps_per_s": metrics["steps_per_s"],
        "samples_per_s": metrics["samples_per_s"],
        "tokens_per_s": metrics["samples_per_s"] * tokens,
        "data_wait_pct": metrics["data_wait_pct"],
        "train_flops_per_sample": fps_,
        "achieved_flops": achieved,
        "matmul_flops": {"before": matmul, "after": matmul_after},
        "fraction_of_matmul_flops": achieved / matmul_ref,
        "final_loss": metrics["loss"],
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
