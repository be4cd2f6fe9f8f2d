"""Caption throughput: batched generation vs one clip at a time, same model, same clips, same run.

Models are RANDOM-WEIGHT (no weights can be downloaded here), so only speed is meaningful; every generation is
forced to exactly ``--tokens`` new tokens (min_new_tokens = max_new_tokens) so both modes do the same work, and the
bench checks that batched and one-at-a-time captions are identical (greedy).

- ``--arch tiny`` (default): the tiny random SmolVLM2 / Qwen2.5-VL the tests use: measures the batching overhead
  and gain of the captioner's own machinery (grouping, padding, processor calls).
- ``--arch smolvlm2-256m``: a random-weight model with the exact architecture of SmolVLM2-256M-Video-Instruct
  (SigLIP-B/16 at 512 px, scale factor 4 -> 64 tokens per frame, SmolLM2-135M text): CPU cost of the default.

Clips are real frames of bikes.mp4 shots. Writes bench/results/caption.json (or --out); ratios are
batched / one-at-a-time measured back to back, so the noisy shared machine affects both alike.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/caption_bench.py [--arch tiny|smolvlm2-256m] [--clips 8] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import captioner  # noqa: E402
from captioner import ClipFrames, load_prompt  # noqa: E402
from captioner.tiny_random import build_tiny_random_qwen2_5_vl, build_tiny_random_smolvlm  # noqa: E402
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from stages.frames import read_frames, sample_indices, video_meta  # noqa: E402


def build_smolvlm2_256m_arch(out: Path) -> Path:
    """Random weights, SmolVLM2-256M-Video-Instruct's published architecture (speed only)."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    from captioner.tiny_random import _save, smolvlm_tokenizer

    tok = smolvlm_tokenizer()
    edge = {"longest_edge": 512}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, max_image_size=edge, size=edge),
        tokenizer=tok,
        video_processor=SmolVLMVideoProcessor(
            max_image_size=edge, size=edge, video_sampling={"fps": 1, "max_frames": 64, "video_size": edge}
        ),
        image_seq_len=64,
        chat_template=DEFAULT_CHAT_TEMPLATE,
    )
    config = SmolVLMConfig(
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=4,
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 512,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": 49280,  # the real vocabulary size: the LM head cost is part of decoding
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "max_position_embeddings": 8192,
            "rope_theta": 100000.0,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
        },
    )
    model = SmolVLMForConditionalGeneration(config)
    return _save(model, processor, out, tok)


def bikes_clips(n: int, frames_per_clip: int) -> tuple[list[np.ndarray], list[ClipFrames]]:
    path = sample_video("bikes")
    meta = video_meta(path)
    bounds = [0, *BIKES_CUTS, meta["num_frames"]]
    shots = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b - a >= frames_per_clip]
    frames, clips = [], []
    for k in range(n):
        a, b = shots[k % len(shots)]
        idx = sample_indices(meta["num_frames"], frames_per_clip, start=a, end=b)
        frames.append(read_frames(path, idx, size=(320, 136)))
        clips.append(ClipFrames(fps=meta["fps"], indices=[i - a for i in idx], total_frames=b - a))
    return frames, clips


def measure(cap, frames, clips, tokens: int, batch: int) -> dict:
    prompt = load_prompt("dense_v1")
    kw = {"max_new_tokens": tokens, "min_new_tokens": tokens}
    cap.generate(frames[:1], prompt, clips[:1], max_new_tokens=2)  # warm-up (allocations, lazy inits)
    t0 = time.perf_counter()
    single = [cap.generate([f], prompt, [c], **kw)[0] for f, c in zip(frames, clips, strict=True)]
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = cap.generate(frames, prompt, clips, batch_size=batch, **kw)
    t_batched = time.perf_counter() - t0
    n_tok = sum(g.tokens for g in batched)
    return {
        "clips": len(frames),
        "frames_per_clip": int(frames[0].shape[0]),
        "new_tokens_per_clip": tokens,
        "batch_size": batch,
        "one_at_a_time": {
            "seconds": round(t_single, 3),
            "clips_per_s": round(len(frames) / t_single, 4),
            "tokens_per_s": round(sum(g.tokens for g in single) / t_single, 2),
        },
        "batched": {
            "seconds": round(t_batched, 3),
            "clips_per_s": round(len(frames) / t_batched, 4),
            "tokens_per_s": round(n_tok / t_batched, 2),
        },
        "speedup_batched_over_single": round(t_single / t_batched, 3),
        "identical_outputs": [g.text for g in single] == [g.text for g in batched],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["tiny", "smolvlm2-256m"], default="tiny")
    ap.add_argument("--clips", type=int, default=None, help="default: 16 (tiny), 4 (smolvlm2-256m)")
    ap.add_argument("--frames", type=int, default=None, help="frames per clip; default 8 (tiny), 4 (256m)")
    ap.add_argument("--tokens", type=int, default=None, help="new tokens per clip; default 32 (tiny), 16 (256m)")
    ap.add_argument("--batch", type=int, default=4)
    # 1: on a shared 2-core box a second intra-op thread made decoding 4x slower (OpenMP barriers under load)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "caption.json")
    args = ap.parse_args()
    tiny = args.arch == "tiny"
    n_clips = args.clips or (16 if tiny else 4)
    n_frames = args.frames or (8 if tiny else 4)
    tokens = args.tokens or (32 if tiny else 16)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames, clips = bikes_clips(n_clips, n_frames)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        builders = (
            {"tiny_random_smolvlm": build_tiny_random_smolvlm, "tiny_random_qwen2_5_vl": build_tiny_random_qwen2_5_vl}
            if tiny
            else {"random_smolvlm2_256m_arch": build_smolvlm2_256m_arch}
        )
        for name, build in builders.items():
            cap = captioner.load(build(Path(tmp) / name))
            results[name] = measure(cap, frames, clips, tokens, args.batch)
            print(name, json.dumps(results[name]), flush=True)
            del cap
    report = {
        "bench": "caption",
        "arch": args.arch,
        "note": "random weights (speed only); batched vs one-at-a-time measured back to back in the same run",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/caption_bench.py " + " ".join(sys.argv[1:]),
        "results": results,
    }
    out = args.out
    if out.exists() and out == Path(__file__).parent / "results" / "caption.json":
        # keep the other arch's section of a previous run
        prev = json.loads(out.read_text())
        runs = prev.get("runs", {}) if "runs" in prev else {}
    else:
        runs = {}
    runs[args.arch] = report
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "caption", "runs": runs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
