"""Caption stage: dense + short captions for each clip from a video VLM (the DALL-E 3 / Sora recaptioning recipe).

Each clip file is decoded once: ``frames_per_clip`` evenly spaced frames (or every frame of a ``target_fps``
resampling, capped at ``max_frames``) through stages/frames.py, at no more than the resolution the model's
processor keeps. Those frames feed both prompts (dense, then short) of ``captioner.Captioner.caption``, which
batches several clips per forward pass, QA-checks each caption and retries a flagged one once.

Resume: ``needs_caption(existing_row, cfg)`` says whether a stored row must be (re)captioned: rows captioned by
the same model with the same prompt versions are skipped unless ``recaption=True``. The stage applies it
itself when the batch already carries caption columns (reruns pass existing captions through untouched).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stages import storage
from stages.errors import raise_if_environment
from stages.settings import Settings

# The table this stage writes (keyed by clip_id); pipeline/schema.py holds the stored copy.
CAPTIONS_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("caption_dense", pa.string()),
        ("caption_short", pa.string()),
        ("caption_model", pa.string()),  # model id or local path, as given
        ("caption_prompt_version", pa.string()),  # "dense_v1+short_v1"
        ("caption_flags", pa.list_(pa.string())),  # qa_* problems left, short:qa_*, fix_boilerplate, retried
        ("caption_tokens_dense", pa.int32()),  # generated tokens (no EOS) of the kept dense caption
        ("caption_tokens_short", pa.int32()),
        ("caption_frames", pa.int32()),  # frames the VLM saw
        ("caption_status", pa.string()),  # ok | flagged | error | skipped_no_model | skipped_no_clip
        ("error_caption", pa.string()),  # error_caption:<Type>: message, or why the model is missing
        ("caption_s", pa.float32()),  # decode + this clip's share of its batches' generation time
    ]
)
OUTPUT_COLUMNS = tuple(CAPTIONS_SCHEMA.names)
STATUS_OK, STATUS_FLAGGED, STATUS_ERROR = "ok", "flagged", "error"
STATUS_NO_MODEL, STATUS_NO_CLIP = "skipped_no_model", "skipped_no_clip"


@dataclass
class CaptionConfig(Settings):
    """Settings of the caption stage; the resources (num_cpus, num_gpus, min_actors..max_actors, batch_size) are
    applied at the pipeline's map_batches call.

    model: HF id or local directory; "auto" = captioner.default_model() (SmolVLM2-256M-Video-Instruct on CPU,
    Qwen2.5-VL-7B-Instruct on CUDA). root: dataset directory OUT that clip_path is relative to.
    """

    model: str = "auto"
    root: str | None = None
    device: str | None = None  # None: cuda > mps > cpu
    dtype: str | None = None  # None: bf16 on capable GPUs, fp16 on older GPUs/MPS, fp32 on CPU
    prompt_dense: str = "dense_v1"  # tag in captioner/prompts/ or a path to a prompt file
    prompt_short: str | None = "short_v1"  # None: no short caption
    frames_per_clip: int = 8  # evenly spaced frames (the processor turns them into video tokens)
    target_fps: float | None = None  # instead of frames_per_clip: sample at this rate ...
    max_frames: int = 16  # ... capped at this many frames
    max_new_tokens: int = 256  # dense caption limit (hit -> qa_truncated -> one retry with 1.5x)
    max_new_tokens_short: int = 48
    batch_size: int = 4  # clips per forward pass (and rows per Ray batch)
    language: str | None = "en"  # expected caption language for qa_language (None: no check)
    retry: bool = True  # retry a flagged caption once with sampling + repetition penalty
    recaption: bool = False  # ignore existing captions by the same model + prompts
    on_missing_model: str = "skip"  # "skip": rows get skipped_no_model + the reason; "error": raise
    backend: str = "auto"  # stages.frames.read_frames backend
    frames_as: str = "auto"  # "video" | "images" | "auto" (video when the processor has a video processor)
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    min_actors: int = 1  # actor pool size (each actor holds one model copy): grows from min to max with the cluster
    max_actors: int | None = 1


def captioning_off(cfg: CaptionConfig) -> bool:
    """Whether captioning is turned off (``model`` empty, "none" or "off")."""
    return cfg.model in ("", "none", "off")


def resolved_model(cfg: CaptionConfig) -> str:
    """The model id/path the stage will load ("auto" resolved for this machine)."""
    if cfg.model and cfg.model != "auto":
        return cfg.model
    from captioner import default_model

    return default_model(cfg.device)


def prompt_version(cfg: CaptionConfig) -> str:
    """The caption_prompt_version this config writes: "<dense tag>[+<short tag>]"."""
    return _prompt_version(cfg.prompt_dense, cfg.prompt_short)


@functools.lru_cache(maxsize=32)
def _prompt_version(dense: str, short: str | None) -> str:
    # cached: needs_caption runs once per stored row during resume
    from captioner import load_prompt

    return "+".join(load_prompt(p).tag for p in (dense, short) if p)


def needs_caption(existing_row: dict[str, Any] | None, cfg: CaptionConfig) -> bool:
    """True when a clip must be captioned: no caption yet, an error/skip, another model or prompt version, or
    ``cfg.recaption``. Captions that stayed ``flagged`` after their retry are kept (rerun with recaption)."""
    if cfg.recaption or not existing_row:
        return True
    if existing_row.get("caption_status") not in (STATUS_OK, STATUS_FLAGGED):
        return True
    return existing_row.get("caption_model") != resolved_model(cfg) or existing_row.get(
        "caption_prompt_version"
    ) != prompt_version(cfg)


class CaptionStage:
    """Captions clips with a video VLM: one decode per clip, dense + short prompt, batched generation, QA.

    Reads: clip_id, clip_path (relative to root), num_frames and fps when present (else probed from the file);
           existing caption_* columns when present (resume: rows that need no caption pass through)
    Writes: caption_dense, caption_short, caption_model, caption_prompt_version, caption_flags (list<string>),
            caption_tokens_dense, caption_tokens_short, caption_frames, caption_status, error_caption, caption_s
    Reasons: none (caption_status flagged/error are data; filtering on them is a SQL choice)

    The model loads once per actor in __init__. A clip that fails writes ``caption_status="error"`` and
    ``error_caption="error_caption:<Type>: message"``; the batch goes on. A missing model either raises
    CaptionerUnavailable (on_missing_model="error") or marks every row skipped_no_model with the reason.
    """

    def __init__(self, cfg: CaptionConfig | None = None, root: str | os.PathLike | None = None):
        from captioner import CaptionerUnavailable, captioner_available, load, load_prompt

        self.cfg = cfg or CaptionConfig()
        root = root if root is not None else self.cfg.root
        self.root = storage.location(root) if root is not None else None  # local directory or bucket prefix
        self.model_name = resolved_model(self.cfg)
        self.prompt_dense = load_prompt(self.cfg.prompt_dense)
        self.prompt_short = load_prompt(self.cfg.prompt_short) if self.cfg.prompt_short else None
        self.prompt_version = "+".join(p.tag for p in (self.prompt_dense, self.prompt_short) if p is not None)
        self.captioner = None
        ok, why = captioner_available(self.model_name)
        self.unavailable: str | None = None if ok else why
        if not ok:
            if self.cfg.on_missing_model == "error":
                raise CaptionerUnavailable(why)
            return
        self.captioner = load(
            self.model_name, device=self.cfg.device, dtype=self.cfg.dtype, frames_as=self.cfg.frames_as
        )

    # ---- decoding --------------------------------------------------------------------------------------------
    def sample_clip(self, path: str | os.PathLike, num_frames: int | None = None, fps: float | None = None):
        """(frames (N,H,W,3) uint8, ClipFrames) for one clip file: the single decode of this clip."""
        from captioner import ClipFrames
        from stages.frames import read_frames, sample_indices, video_meta

        meta = video_meta(path)
        num_frames = int(num_frames or meta["num_frames"])
        fps = float(fps or meta["fps"] or 0.0) or 24.0
        if self.cfg.target_fps:
            idx = sample_indices(num_frames, src_fps=fps, target_fps=self.cfg.target_fps, max_n=self.cfg.max_frames)
        else:
            idx = sample_indices(num_frames, self.cfg.frames_per_clip, max_n=self.cfg.max_frames)
        if not idx:
            raise ValueError(f"clip has no frames to sample (num_frames={num_frames})")
        size = _decode_size(meta["width"], meta["height"], self.captioner.frame_max_side if self.captioner else None)
        frames = read_frames(path, idx, size=size, backend=self.cfg.backend)
        return frames, ClipFrames(fps=fps, indices=idx, total_frames=num_frames)

    # ---- Ray callable ----------------------------------------------------------------------------------------
    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Caption a batch; returns a pyarrow Table with exactly CAPTIONS_SCHEMA.

        A typed table rather than a dict of numpy arrays: a batch where every row was skipped or failed would
        otherwise hand Ray all-None object columns typed ``null`` and blocks of different types.
        """
        n = len(batch["clip_id"])
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        todo: list[int] = []
        for i in range(n):
            existing = _existing(batch, i)
            if existing is not None and not needs_caption(existing, self._cfg_for_resume()):
                rows[i] = existing
                continue
            rel = _value(batch, "clip_path", i)
            if rel is None:
                rows[i] = {"caption_status": STATUS_NO_CLIP}
            elif self.captioner is None:
                rows[i] = {"caption_status": STATUS_NO_MODEL, "error_caption": self.unavailable}
            else:
                todo.append(i)
        self._caption_rows(batch, todo, rows)
        for i, r in enumerate(rows):
            r["clip_id"] = str(batch["clip_id"][i])
        return pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA)

    def _cfg_for_resume(self) -> CaptionConfig:
        # needs_caption compares against the model this actor resolved (and already loaded).
        from dataclasses import replace

        return replace(self.cfg, model=self.model_name)

    def _caption_rows(self, batch: dict[str, np.ndarray], todo: list[int], rows: list[dict[str, Any]]) -> None:
        frames, clips, ok, secs = [], [], [], {}
        for i in todo:
            t0 = time.perf_counter()
            rel = str(batch["clip_path"][i])
            path = storage.under(self.root, str(rel))
            nf, fps = _value(batch, "num_frames", i), _value(batch, "fps", i)
            try:
                f, c = self.sample_clip(path, int(nf) if nf else None, float(fps) if fps else None)
            except Exception as e:  # errors are data: one bad clip must not stop the batch
                raise_if_environment(e, f"caption of {path}")
                rows[i] = _error(e)
                secs[i] = time.perf_counter() - t0
                continue
            frames.append(f)
            clips.append(c)
            ok.append(i)
            secs[i] = time.perf_counter() - t0
        if not ok:
            for i in todo:
                rows[i]["caption_s"] = secs.get(i)
            return
        t0 = time.perf_counter()
        dense = self._run(frames, clips, self.prompt_dense, self.cfg.max_new_tokens)
        short = None
        if self.prompt_short is not None:
            short = self._run(frames, clips, self.prompt_short, self.cfg.max_new_tokens_short)
        share = (time.perf_counter() - t0) / len(ok)
        for k, i in enumerate(ok):
            d = dense[k]
            s = short[k] if short is not None else None
            if isinstance(d, BaseException) or isinstance(s, BaseException):
                rows[i] = _error(d if isinstance(d, BaseException) else s)
                rows[i]["caption_s"] = secs[i] + share
                continue
            flags = list(d.flags) + ([f"short:{f}" for f in s.flags] if s is not None else [])
            rows[i] = {
                "caption_dense": d.text,
                "caption_short": s.text if s is not None else None,
                "caption_model": self.model_name,
                "caption_prompt_version": self.prompt_version,
                "caption_flags": flags,
                "caption_tokens_dense": d.tokens,
                "caption_tokens_short": s.tokens if s is not None else None,
                "caption_frames": int(len(frames[k])),
                "caption_status": STATUS_FLAGGED if "flagged" in (d.status, s.status if s else "ok") else STATUS_OK,
                "caption_s": secs[i] + share,
            }
        for i in todo:
            rows[i].setdefault("caption_s", secs.get(i))

    def _run(self, frames: list[np.ndarray], clips: list, prompt, max_new_tokens: int) -> list:
        """Batched captions; if the batched call fails, one clip at a time so only the bad clip errors."""
        kw = {
            "max_new_tokens": max_new_tokens,
            "batch_size": self.cfg.batch_size,
            "retry": self.cfg.retry,
            "language": self.cfg.language,
        }
        try:
            return self.captioner.caption(frames, prompt, clips, **kw)
        except Exception:  # noqa: BLE001 - isolate the failing clip below
            out: list = []
            for f, c in zip(frames, clips, strict=True):
                try:
                    out.append(self.captioner.caption([f], prompt, [c], **kw)[0])
                except Exception as e:  # noqa: BLE001 - errors are data
                    raise_if_environment(e, "captioner")
                    out.append(e)
            return out


def _decode_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(w, h) that shrinks the frame so its longer side is max_side (never enlarges; None = native)."""
    if not max_side or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _value(batch: dict[str, np.ndarray], key: str, i: int) -> Any:
    if key not in batch:
        return None
    v = batch[key][i]
    v = v.item() if isinstance(v, np.generic) else v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def _existing(batch: dict[str, np.ndarray], i: int) -> dict[str, Any] | None:
    """The row's stored caption columns when the batch carries them (a rerun over the captions table)."""
    if "caption_status" not in batch or _value(batch, "caption_status", i) is None:
        return None
    row = {c: _value(batch, c, i) for c in OUTPUT_COLUMNS if c != "clip_id" and c in batch}
    if row.get("caption_flags") is not None:
        row["caption_flags"] = [str(f) for f in row["caption_flags"]]
    for c in ("caption_tokens_dense", "caption_tokens_short", "caption_frames"):
        if row.get(c) is not None:
            row[c] = int(row[c])
    return row


def _error(e: BaseException) -> dict[str, Any]:
    msg = str(e).replace("\n", " ")[:500]
    return {"caption_status": STATUS_ERROR, "error_caption": f"error_caption:{type(e).__name__}: {msg}"}


def _stage():
    from stages.catalogue import Stage

    return Stage(
        name="captions",
        stage="stages.caption:CaptionStage",
        config="stages.caption:CaptionConfig",
        schema="stages.caption:CAPTIONS_SCHEMA",
    )


STAGE = _stage()  # the catalogue entry (stages/catalogue.py): after the per-clip filters, on the clips they keep
