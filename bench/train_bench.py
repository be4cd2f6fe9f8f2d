"""Training throughput of the DiT on real-footage shards: tokens/s, samples/s, data-wait %, and achieved FLOP/s as
a fraction of a plain fp32 matmul's FLOP/s measured in the same process (a ratio, so noisy shared machines still
give a comparable number).

    .venv/bin/python bench/train_bench.py [--model tiny] [--steps 40] [--size 32] [--frames 8] [--patch 1 4 4]

Writes bench/results/train.json.
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
    args = parser.parse_args()

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
