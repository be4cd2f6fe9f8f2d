"""Sample videos from a trained checkpoint: text-to-video, image-to-video (a first image), video extension
(continue a clip), written as a playable H.264 mp4 with PyAV.

The checkpoint's state.json names the codec and text encoder the shards were prepared with, so sampling
decodes and encodes prompts exactly as training saw them.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np
import torch

from training.buckets import resize_crop
from training.diffusion import FlowConfig, RectifiedFlow
from training.dit import DiT, DiTConfig
from training.train import resolve_checkpoint


@functools.lru_cache(maxsize=4)
def load_pipeline(checkpoint: str, device: str = "cpu", use_ema: bool = True):
    """(model, flow, codec, text_encoder, state) for a checkpoint dir or run dir (latest checkpoint)."""
    from safetensors.torch import load_file

    from training.codecs import load_codec
    from training.text import load_text_encoder

    path = resolve_checkpoint(checkpoint)
    state = json.loads((path / "state.json").read_text())
    model = DiT(DiTConfig.from_dict(state["dit"]))
    model.load_state_dict(load_file(str(path / ("ema.safetensors" if use_ema else "model.safetensors"))))
    model = model.to(device).eval().requires_grad_(False)
    flow = RectifiedFlow(FlowConfig(**state["flow"]))
    codec = load_codec(state["codec"], device=device)
    if not state.get("text_encoder"):
        raise ValueError(f"{path}: the training data manifest names no text encoder; cannot encode prompts")
    text = load_text_encoder(state["text_encoder"], max_length=state.get("text_max_length"), device=device)
    return model, flow, codec, text, state


def default_shape(state: dict) -> tuple[int, int, int]:
    """(frames, height, width) of the largest bucket the model was trained on."""
    buckets = state.get("data_manifest", {}).get("buckets", {}).get("buckets") or [
        {"frames": 8, "height": 32, "width": 32}
    ]
    b = max(buckets, key=lambda b: (b["frames"] * b["height"] * b["width"], b["frames"]))
    return int(b["frames"]), int(b["height"]), int(b["width"])


def _load_frames(src) -> np.ndarray:
    """An image/clip path or array -> (T, H, W, 3) uint8."""
    if isinstance(src, np.ndarray):
        return src[None] if src.ndim == 3 else src
    path = Path(src)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))[None]
    from training.video import read_clip_frames

    return read_clip_frames(path)


def sample(
    checkpoint: str | Path,
    prompt: str,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    steps: int = 30,
    cfg: float = 4.0,
    seed: int = 0,
    image: str | Path | np.ndarray | None = None,
    extend: str | Path | np.ndarray | None = None,
    upsample: bool | int = False,
    *,
    out: str | Path | None = None,
    fps: float = 24.0,
    use_ema: bool = True,
    device: str = "cpu",
) -> np.ndarray:
    """Generate a (T, H, W, 3) uint8 video for ``prompt``; also write it to ``out`` (mp4) if given.

    image: a first frame (path or array): its latent is given clean at frame 0 (image-to-video).
    extend: a clip (path or array): its last frames are given clean at the start and the model continues it;
      the returned video starts with (the codec's reconstruction of) those context frames.
    upsample: True (x2) or an int factor: bicubic spatial upscaling of the decoded frames for viewing - a display
      aid, not a learned super-resolution.
    frames/height/width default to the largest training bucket.
    """
    model, flow, codec, text, state = load_pipeline(str(checkpoint), device, use_ema)
    f0, h0, w0 = default_shape(state)
    frames, height, width = codec.fit_frames(frames or f0), height or h0, width or w0
    shape = codec.latent_shape(frames, height, width)  # (C, t, h, w)
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((1, *shape), generator=g).to(device)
    emb = torch.from_numpy(text.encode([prompt])[0]).float()[None].to(device)  # (1, L, D)
    mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=device)

    cond_latents = cond_mask = None
    if image is not None or extend is not None:
        cond_latents = torch.zeros_like(noise)
        cond_mask = torch.zeros(1, shape[1], device=device)
        if image is not None:
            ctx = resize_crop(_load_frames(image)[:1], height, width)
        else:
            clip = _load_frames(extend)
            n = codec.fit_frames(max(1, min(len(clip), frames // 2)))
            ctx = resize_crop(clip[-n:], height, width)
        z = codec.encode(ctx).to(device)  # (C, t_ctx, h, w)
        k = min(z.shape[1], shape[1] - 1)
        cond_latents[0, :, :k] = z[:, :k]
        cond_mask[0, :k] = 1.0

    x = flow.sample(model, noise, emb, mask, steps=steps, cfg=cfg, cond_latents=cond_latents, cond_mask=cond_mask)
    video = codec.decode(x.cpu())[0][:frames]  # (T, H, W, 3)
    if upsample:
        import cv2

        factor = 2 if upsample is True else int(upsample)
        video = np.stack(
            [cv2.resize(f, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC) for f in video]
        )
    if out is not None:
        from training.video import write_mp4

        write_mp4(video, out, fps=fps)
    return video


def upsample_prompt(prompt: str, model: str) -> str:
    """Short user prompt -> a dense caption in the training captions' style, with the captioner's rewriter
    (DALL-E 3 / Sora "prompt upsampling"). Falls back to the prompt as given when the rewrite fails its QA."""
    from captioner.enhance import load_rewriter

    return load_rewriter(model).upsample([prompt])[0].text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for `clipforge sample`."""
    parser.add_argument("checkpoint", nargs="?", help="a run dir (latest checkpoint) or a checkpoints/step_N dir")
    parser.add_argument("--checkpoint", dest="checkpoint_flag", help="the same, as a flag")
    parser.add_argument("--prompt", required=True)
    parser.add_argument(
        "--upsample-prompt",
        metavar="LLM",
        help="rewrite the short prompt into the dense caption style first, with this text LLM (HF id or dir)",
    )
    parser.add_argument("--out", default="sample.mp4", help="mp4 to write")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image", help="first frame for image-to-video")
    parser.add_argument("--extend", help="clip to continue (video extension)")
    parser.add_argument("--upsample", type=int, default=0, help="bicubic display upscaling factor (0 = off)")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw weights, not the EMA")
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="clipforge sample", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args(args)
    checkpoint = args.checkpoint_flag or args.checkpoint
    if not checkpoint:
        raise SystemExit(
            "clipforge sample: give the checkpoint (a run dir or checkpoints/step_N), e.g. --checkpoint DIR"
        )
    prompt = args.prompt
    if args.upsample_prompt:
        prompt = upsample_prompt(prompt, args.upsample_prompt)
        print(f"prompt upsampled: {prompt!r}", flush=True)
    video = sample(
        checkpoint, prompt, args.frames, args.height, args.width, args.steps, args.cfg, args.seed,
        image=args.image, extend=args.extend, upsample=args.upsample or False, out=args.out, fps=args.fps,
        use_ema=args.ema, device=args.device,
    )  # fmt: skip
    print(f"wrote {args.out}: {video.shape[0]} frames {video.shape[2]}x{video.shape[1]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
