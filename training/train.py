"""Train the DiT on prepared shards with rectified flow. One ``main(args)``, one flat loop (nanochat style):
setup, model, data, loop, log, checkpoint.

Exact resume: everything random in a step (timesteps, noise, caption dropout, conditioning masks) is drawn from
one CPU ``torch.Generator`` for the *global* batch, the batch order is a two-integer cursor (data.py), and a
checkpoint stores model + EMA (safetensors), optimizer state, every RNG state and the cursor. On CPU, N steps
straight and N/2 + kill + resume N/2 give bit-identical weights (tests/training/test_train_resume.py).

Multi-worker: ``--workers N`` runs the same ``train()`` on Ray Train (TorchTrainer, DDP; gloo on CPU, nccl on
GPU). Every rank draws the global batch's randomness and keeps its slice, so N workers x B/N samples compute
the same update as one worker x B samples, up to float summation order.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import queue
import random
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages import storage
from training.data import BucketBatchSampler, ShardDataset, collate, condition_masks
from training.diffusion import FlowConfig, RectifiedFlow
from training.dit import DiT, dit_config


@dataclass
class TrainConfig:
    """Typed defaults; a YAML/JSON file (--config) overrides them, CLI flags override the file."""

    data: str = ""  # a prepared dataset directory (manifest.json + shards/)
    out: str = "runs/dit"  # run directory: config.json, checkpoints/, tb/
    model: str = "tiny"  # DiT preset: nano, tiny, S, B, L, XL
    patch: list[int] = field(default_factory=lambda: [1, 2, 2])
    hidden_size: int | None = None  # overrides of the preset
    depth: int | None = None
    num_heads: int | None = None
    batch_size: int = 8  # global batch (split across workers)
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    max_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    text_dropout: float = 0.1  # caption replaced by the learned null embedding (classifier-free guidance)
    p_i2v: float = 0.0  # first latent frame given clean (image-to-video)
    p_extend: float = 0.0  # first k latent frames given clean (video extension)
    flow: dict = field(default_factory=dict)  # FlowConfig fields: logit_mean, logit_std, base_tokens, shift
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 3
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere), bf16, fp32
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    prefetch: int = 2  # batches assembled ahead by a background thread
    workers: int = 1  # > 1: Ray Train DDP workers
    cpus_per_worker: float = 1.0
    tensorboard: bool = True
    resume: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise KeyError(f"unknown train config keys: {sorted(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------- checkpoints


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (a checkpoint appears only once fully written)."""
    d = Path(out) / "checkpoints"
    return sorted(p for p in d.glob("step_*") if p.is_dir() and (p / "state.json").is_file()) if d.is_dir() else []


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir from a step dir or a run dir (its latest checkpoint)."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    found = checkpoint_dirs(path)
    if not found:
        raise FileNotFoundError(f"no checkpoint under {path} (expected {path}/checkpoints/step_*/state.json)")
    return found[-1]


def save_checkpoint(
    out: Path,
    step: int,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    cursor: dict,
    state: dict,
    keep: int,
) -> Path:
    """Write step_<N>/ atomically: into a temp dir first, renamed into place when every file is on disk."""
    from safetensors.torch import save_file

    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors")
    )
    save_file({k: v.detach().contiguous().cpu() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "generator": generator.get_state(),
    }
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "cursor": cursor}, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoint_dirs(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator
) -> dict:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path / "model.safetensors")))
    ema.load_state_dict(load_file(str(path / "ema.safetensors")))
    opt.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    generator.set_state(rng["generator"])
    return json.loads((path / "state.json").read_text())


# --------------------------------------------------------------------------------------------- the loop


class Prefetcher:
    """Assembles batches on a background thread, in sampler order; each item carries the cursor *after* it,
    so a checkpoint records exactly what the loop consumed, not what the thread read ahead.

    Each worker reads only its own part of each global batch (``part``: the slice of the batch's indices it trains
    on), padded like the whole batch (``ShardDataset.text_length``), so N workers read the data once between them."""

    def __init__(self, ds: ShardDataset, sampler: BucketBatchSampler, depth: int, part: slice = slice(None)):
        self.ds, self.sampler, self.part = ds, sampler, part
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for idx in self.sampler:
                mine = idx[self.part]
                batch = collate(self.ds.samples(mine), text_length=self.ds.text_length(idx))
                batch["global_size"] = len(idx)
                item = (batch, self.sampler.state_dict())
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as e:  # surface loader errors in the training thread
            self.q.put(e)

    def next(self) -> tuple[dict, dict]:
        item = self.q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread and wait for it: a daemon thread still inside torch (collating the batch after the
        last step) when the interpreter exits aborts the process ("terminate called without an active exception"),
        which a loaded machine made happen at the end of a resumed run."""
        self.stop.set()
        self.thread.join(timeout=60)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def train(cfg: TrainConfig, report=None) -> dict[str, Any]:
    """Run (or resume) training as described by ``cfg``; returns the last logged metrics.

    Works single-process or as one rank of a torch.distributed group (Ray Train sets that up).
    ``report(metrics)`` is called at every log step (Ray Train passes ray.train.report).
    """
    # ---- setup
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    world = torch.distributed.get_world_size() if dist else 1
    if cfg.batch_size % world:
        raise ValueError(f"global batch_size {cfg.batch_size} is not divisible by {world} workers")
    local_bs = cfg.batch_size // world
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.device == "auto":
        device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    amp = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    # ---- data
    ds = ShardDataset(cfg.data)
    sampler = BucketBatchSampler(ds.by_bucket(), cfg.batch_size, cfg.seed)

    # ---- model
    mcfg = dit_config(
        cfg.model,
        in_channels=ds.latent_channels,
        text_dim=ds.text_dim,
        patch=tuple(cfg.patch),
        hidden_size=cfg.hidden_size,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
    )
    model = DiT(mcfg).to(device)
    model.gradient_checkpointing = cfg.grad_checkpointing
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    flow = RectifiedFlow(FlowConfig(**cfg.flow))
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps, weight_decay=cfg.weight_decay
    )
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    state = {
        "config": asdict(cfg),
        "dit": mcfg.to_dict(),
        "flow": flow.config.to_dict(),
        "codec": ds.manifest.get("codec", {}).get("spec", "pixel"),
        "text_encoder": ds.manifest.get("text_encoder", {}).get("spec"),
        "text_max_length": ds.manifest.get("text_encoder", {}).get("max_length"),
        "data_manifest": ds.manifest,
    }
    step = 0
    if cfg.resume and checkpoint_dirs(out):
        ckpt = checkpoint_dirs(out)[-1]
        saved = load_checkpoint(ckpt, model, ema, opt, generator)
        step = int(saved["step"])
        sampler.load_state_dict(saved["cursor"])
        if rank == 0:
            print(f"resumed from {ckpt} at step {step}", flush=True)
    if rank == 0:
        (out / "config.json").write_text(
            json.dumps(state["config"] | {"dit": state["dit"], "flow": state["flow"]}, indent=2)
        )
    ddp = torch.nn.parallel.DistributedDataParallel(model) if dist else model
    n_params = sum(p.numel() for p in model.parameters())
    writer = None
    if rank == 0 and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    if rank == 0:
        print(
            f"DiT-{cfg.model} {n_params / 1e6:.2f}M params | {len(ds)} clips in {len(sampler.groups)} buckets | "
            f"global batch {cfg.batch_size} on {world} worker(s) | {device} {'bf16' if amp else 'fp32'}",
            flush=True,
        )

    # ---- loop
    loader = Prefetcher(ds, sampler, cfg.prefetch, part=slice(rank * local_bs, (rank + 1) * local_bs))
    cursor = sampler.state_dict()
    metrics: dict[str, Any] = {}
    window = {"t0": time.perf_counter(), "data": 0.0, "steps": 0, "loss": 0.0}
    model.train()
    try:
        while step < cfg.max_steps:
            t_data = time.perf_counter()
            batch, cursor = loader.next()
            window["data"] += time.perf_counter() - t_data

            # Randomness for the global batch, in a fixed order, from the one generator.
            # (this worker holds only its slice of the batch; the draws are for all of it)
            b, t_lat = batch["global_size"], batch["latents"].shape[2]
            drop = torch.rand(b, generator=generator) < cfg.text_dropout
            cond = condition_masks(b, t_lat, cfg.p_i2v, cfg.p_extend, generator)
            t = flow.sample_t(b, tuple(batch["latents"].shape[1:]), generator)
            noise = torch.randn((b, *batch["latents"].shape[1:]), generator=generator)
            sl = slice(rank * local_bs, (rank + 1) * local_bs)

            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg)
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
            with autocast:
                loss, _ = flow.loss(
                    ddp,
                    batch["latents"].to(device),
                    batch["text"].to(device),
                    batch["text_mask"].to(device),
                    generator,
                    cond_mask=None if cond is None else cond[sl].to(device),
                    drop=drop[sl].to(device),
                    noise=noise[sl],
                    t=t[sl],
                )
            loss.backward()
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
            )
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - cfg.ema_decay)
            step += 1
            window["steps"] += 1
            window["loss"] += loss.detach().float().item()

            # ---- log
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                elapsed = time.perf_counter() - window["t0"]
                loss_mean = window["loss"] / window["steps"]
                if dist:
                    lt = torch.tensor([loss_mean], device=device)
                    torch.distributed.all_reduce(lt)
                    loss_mean = lt.item() / world
                metrics = {
                    "step": step,
                    "loss": loss_mean,
                    "lr": opt.param_groups[0]["lr"],
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "steps_per_s": window["steps"] / elapsed,
                    "samples_per_s": window["steps"] * cfg.batch_size / elapsed,
                    "data_wait_pct": 100.0 * window["data"] / elapsed,
                }
                if rank == 0:
                    print(
                        f"step {step}/{cfg.max_steps} | loss {loss_mean:.4f} | lr {metrics['lr']:.2e} | "
                        f"{metrics['steps_per_s']:.2f} steps/s | {metrics['samples_per_s']:.1f} samples/s | "
                        f"data wait {metrics['data_wait_pct']:.1f}%",
                        flush=True,
                    )
                    (out / "metrics.json").write_text(json.dumps(metrics))
                    if writer is not None:
                        for k, v in metrics.items():
                            if k != "step" and v is not None:
                                writer.add_scalar(f"train/{k}", v, step)
                if report is not None:
                    report(metrics)
                window = {"t0": time.perf_counter(), "data": 0.0, "steps": 0, "loss": 0.0}

            # ---- checkpoint
            if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.max_steps):
                save_checkpoint(out, step, model, ema, opt, generator, cursor, state, cfg.keep_checkpoints)
    finally:
        loader.close()
        if writer is not None:
            writer.close()
    if dist:
        torch.distributed.barrier()
    return metrics


# ------------------------------------------------------------------------------------------- Ray Train


def _ray_worker(config: dict) -> None:
    import ray.train

    train(TrainConfig.from_dict(config), report=ray.train.report)


def train_ray(cfg: TrainConfig) -> dict[str, Any]:
    """Run ``train`` on ``cfg.workers`` Ray Train workers (DDP: gloo on CPU, nccl on GPU)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        # RAY_ADDRESS (Ray's own variable) joins a cluster; without it a new local Ray, never a stray one
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", ignore_reinit_error=True, include_dashboard=False)
    use_gpu = torch.cuda.is_available()
    d = asdict(cfg)
    d["data"] = cfg.data if storage.is_uri(cfg.data) else str(Path(cfg.data).resolve())
    d["out"] = str(Path(cfg.out).resolve())
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config=d,
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
        ),
        run_config=RunConfig(storage_path=str(Path(d["out"]) / "ray"), name="train"),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    # Rank 0 writes the last logged metrics next to the checkpoints (Ray Train v2 keeps metrics only with
    # reported checkpoints, and the checkpoints here are the run's own, not Ray's).
    return json.loads((Path(d["out"]) / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for `clipforge train`: each overrides the --config file, which overrides TrainConfig defaults."""
    parser.add_argument("data", nargs="?", help="prepared dataset dir (from `clipforge prepare`)")
    parser.add_argument("--config", help="YAML/JSON file with TrainConfig fields")
    parser.add_argument("--out", help="run dir (checkpoints/, tb/, config.json)")
    parser.add_argument("--model", help="DiT preset: nano, tiny, S, B, L, XL")
    parser.add_argument("--patch", type=int, nargs=3, metavar=("PT", "PH", "PW"))
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--ema-decay", type=float)
    parser.add_argument("--text-dropout", type=float)
    parser.add_argument("--p-i2v", type=float)
    parser.add_argument("--p-extend", type=float)
    parser.add_argument("--log-every", type=int)
    parser.add_argument("--ckpt-every", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workers", type=int, help=">1 trains on Ray Train with DDP")
    parser.add_argument("--cpus-per-worker", type=float)
    parser.add_argument("--grad-checkpointing", action="store_true", default=None)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None)
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the latest checkpoint")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    d: dict[str, Any] = {}
    if getattr(args, "config", None):
        import yaml

        d.update(yaml.safe_load(Path(args.config).read_text()) or {})
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            d[f.name] = list(v) if isinstance(v, tuple) else v
    cfg = TrainConfig.from_dict(d)
    if not cfg.data:
        raise SystemExit("train: give the prepared dataset dir (positional DATA or `data:` in --config)")
    return cfg


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="clipforge train", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args(args)
    cfg = config_from_args(args)
    metrics = train_ray(cfg) if cfg.workers > 1 else train(cfg)
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
