"""Video captioning with a vision-language model through transformers (no Ray here).

Any image-text-to-text model that the installed transformers ships and whose processor takes videos works:
the model loads through ``AutoProcessor`` + ``AutoModelForImageTextToText`` by Hugging Face id or local
directory, and prompts are built with the model's own chat template (``processor.apply_chat_template``).
Checked against transformers 5.23's registry (``MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES``): ``smolvlm``
(SmolVLM2), ``qwen2_5_vl``, ``qwen3_vl``, ``qwen2_vl``, ``llava_onevision``, ``llava_next_video``, ... Processors
without a video processor get the frames as a list of images instead.

Defaults:

- CPU / laptop: ``HuggingFaceTB/SmolVLM2-256M-Video-Instruct`` (256M params, ~1 GB fp32; trained on video;
  family ``smolvlm``). ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct`` is the next step up.
- GPU: ``Qwen/Qwen2.5-VL-7B-Instruct`` (family ``qwen2_5_vl``; the captioner NVIDIA Cosmos curation uses for
  video). ``Qwen/Qwen3-VL-8B-Instruct`` (``qwen3_vl``) loads the same way.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captioner import qa
from captioner.prompt import Prompt

log = logging.getLogger(__name__)

DEFAULT_CPU_MODEL = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
DEFAULT_GPU_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"

# The one retry of a flagged caption: sampling with a repetition penalty breaks the greedy loops and
# degenerate openings that cause most flags; more tokens for captions cut at the limit.
RETRY_GENERATION: dict[str, Any] = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.2}
RETRY_TOKEN_FACTOR = 1.5
RETRY_SEED = 1234

_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


class CaptionerUnavailable(RuntimeError):
    """The captioning model's weights (or processor files) cannot be found/loaded."""


def how_to_provide(model: str) -> str:
    """The instruction every missing-weights error carries (for a local directory: what it must hold)."""
    if _looks_like_path(model):
        return (
            "A local model directory must hold the model's config.json and weight files: download a model once "
            "where the Hugging Face Hub is reachable (`hf download ORG/NAME --local-dir DIR`), copy DIR here and pass "
            "it: `clipforge caption OUT --model DIR`, or --captioner.model DIR on `clipforge run`"
        )
    return (
        f"Download it once where the Hugging Face Hub is reachable: `hf download {model}` "
        f"(or `huggingface-cli download {model}`, or `hf download {model} --local-dir DIR` and copy DIR over), "
        "then pass the local directory (or the id again once it is in the HF cache): "
        "`clipforge caption OUT --model PATH_OR_ID`, or --captioner.model PATH_OR_ID on `clipforge run`"
    )


def default_model(device: str | torch.device | None = None) -> str:
    """The documented default model id for this machine: the small SmolVLM2 on CPU/MPS, Qwen2.5-VL-7B on CUDA."""
    return DEFAULT_GPU_MODEL if pick_device(device).type == "cuda" else DEFAULT_CPU_MODEL


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA, else Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on GPUs that support it (fp16 on older ones and MPS), fp32 on CPU (bf16 matmuls are slow there)."""
    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def pick_attention(device: torch.device, dtype: torch.dtype) -> str:
    """flash_attention_2 only on CUDA with half precision when the flash_attn package is installed; else sdpa."""
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa"


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with separators, ~ or a leading dot is a path.
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep in model.replace("/", "")


def _has_weights(path: Path) -> bool:
    return any(any(path.glob(g)) for g in _WEIGHT_GLOBS)


def captioner_available(model: str) -> tuple[bool, str]:
    """Cheap check (no weights loaded) the pipeline calls once: can ``load(model)`` succeed here?

    True for a local directory with config + weights, a hub id already in the local HF cache, or a hub id it
    could download now (once, into the HF cache; HF_HUB_OFFLINE unset). The string says why, or how to
    provide the model.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return False, f"captioner model directory {path} has no config.json. {how_to_provide(model)}"
        if not _has_weights(path):
            return False, f"captioner model directory {path} has no weight files. {how_to_provide(model)}"
        return True, f"local directory {path}"
    if _looks_like_path(model):
        return False, f"captioner model directory {path} does not exist. {how_to_provide(model)}"
    from huggingface_hub import constants, snapshot_download

    try:
        snap = Path(snapshot_download(model, local_files_only=True))
        if (snap / "config.json").is_file() and _has_weights(snap):
            return True, f"{model} found in the local Hugging Face cache ({snap})"
    except Exception:  # noqa: BLE001 - any cache miss means "not cached"
        pass
    if constants.HF_HUB_OFFLINE:
        return False, (
            f"captioner model {model!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE=1). {how_to_provide(model)}"
        )
    # Download once, here (the driver), so actors load from the cache and an unreachable hub is known now.
    try:
        snap = Path(snapshot_download(model))
    except Exception as e:  # noqa: BLE001 - unreachable hub, unknown id, gated repo: all mean "not available"
        why = f"captioner model {model!r} could not be downloaded ({type(e).__name__})"
        return False, f"{why}. {how_to_provide(model)}"
    if (snap / "config.json").is_file() and _has_weights(snap):
        return True, f"{model} downloaded to the local Hugging Face cache ({snap})"
    return False, f"captioner model {model!r} downloaded without config/weights. {how_to_provide(model)}"


def load(
    model_id_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    frames_as: str = "auto",
) -> Captioner:
    """Load a video VLM by Hugging Face id or local directory (exactly as users pass it).

    Device/dtype/attention default to what suits the machine (see pick_*). ``frames_as``: "video" (the processor's
    video path, with timestamps), "images" (one image per frame, for image-only families), "auto" (video when
    the processor has a video processor). Missing weights raise CaptionerUnavailable naming the model and how to
    download it; nothing ever falls back to random weights.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    name = str(model_id_or_path)
    ok, why = captioner_available(name)
    if not ok:
        raise CaptionerUnavailable(why)
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    attn = attn_implementation or pick_attention(dev, dt)
    src = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    try:
        processor = AutoProcessor.from_pretrained(src)
        try:
            model = AutoModelForImageTextToText.from_pretrained(src, dtype=dt, attn_implementation=attn)
        except ValueError as e:
            about_attention = "attn" in str(e).lower() or "attention" in str(e).lower()
            if attn == "eager" or not about_attention:
                raise
            # A family without SDPA/FA2 support: eager attention is always implemented.
            log.warning("%s does not support attn_implementation=%s (%s); using eager", name, attn, e)
            attn = "eager"
            model = AutoModelForImageTextToText.from_pretrained(src, dtype=dt, attn_implementation=attn)
    except OSError as e:
        raise CaptionerUnavailable(
            f"captioner model {name!r} could not be loaded ({type(e).__name__}: {e}). {how_to_provide(name)}"
        ) from e
    model.to(dev).eval()
    return Captioner(model, processor, name=name, device=dev, dtype=dt, attn_implementation=attn, frames_as=frames_as)


@dataclass
class ClipFrames:
    """Where the frames came from, for the processor's timestamps (SmolVLM/Qwen3-VL print them in the prompt)."""

    fps: float
    indices: Sequence[int]
    total_frames: int


@dataclass
class Generation:
    """One raw generation: decoded text, generated token count (without EOS), and whether it hit the limit."""

    text: str
    tokens: int
    hit_token_limit: bool


@dataclass
class CaptionResult:
    """A QA'd caption. ``flags`` hold qa_* problems left and notes (fix_boilerplate, retried)."""

    text: str
    raw: str
    tokens: int
    flags: list[str] = field(default_factory=list)
    prompt: str = ""
    model: str = ""

    @property
    def status(self) -> str:
        """ "ok" when no qa_* problem is left, else "flagged"."""
        return "flagged" if any(f in qa.RETRY_FLAGS for f in self.flags) else "ok"


class Captioner:
    """A loaded VLM + processor. ``caption()`` turns decoded clip frames into QA'd captions, batched."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        attn_implementation: str = "sdpa",
        frames_as: str = "auto",
    ):
        self.model = model
        self.processor = processor
        self.name = name
        self.device = device
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.family = getattr(model.config, "model_type", "unknown")
        self.tokenizer = processor.tokenizer
        # Decoder-only generation continues from the last position: pad on the left.
        self.tokenizer.padding_side = "left"
        has_video = getattr(processor, "video_processor", None) is not None
        if frames_as not in ("auto", "video", "images"):
            raise ValueError(f"frames_as must be auto, video or images, not {frames_as!r}")
        if frames_as == "video" and not has_video:
            raise ValueError(f"{name}: its processor has no video processor; use frames_as='images'")
        self.video_input = has_video if frames_as == "auto" else frames_as == "video"
        gen_cfg = getattr(model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)

    # ---- prompt construction -------------------------------------------------------------------------------
    def messages(self, prompt: Prompt, num_frames: int) -> list[dict[str, Any]]:
        """The chat for one clip: the video (or its frames as images) then the instruction."""
        media = [{"type": "video"}] if self.video_input else [{"type": "image"}] * num_frames
        return [{"role": "user", "content": [*media, {"type": "text", "text": prompt.text}]}]

    def chat_text(self, prompt: Prompt, num_frames: int = 1) -> str:
        """The prompt string from the model's own chat template (placeholders not yet expanded)."""
        return self.processor.apply_chat_template(
            self.messages(prompt, num_frames), add_generation_prompt=True, tokenize=False
        )

    @property
    def frame_max_side(self) -> int | None:
        """Longest frame side worth decoding for this processor (it resizes anyway; decoding smaller saves time)."""
        vp = getattr(self.processor, "video_processor", None) or getattr(self.processor, "image_processor", None)
        if vp is None:
            return None
        max_image = getattr(vp, "max_image_size", None)
        if isinstance(max_image, dict) and max_image.get("longest_edge"):
            return int(max_image["longest_edge"])  # SmolVLM/Idefics3: frames become squares of this side
        size = getattr(vp, "size", None)
        size = dict(size) if size is not None and not isinstance(size, dict) else size
        if isinstance(size, dict) and size.get("longest_edge"):
            edge = int(size["longest_edge"])
            # Qwen-style processors give a pixel budget, not a side: a 16:9 frame at that budget.
            return int(math.sqrt(edge * 16 / 9)) if edge > 8192 else edge
        return None

    def prepare(
        self, frames_list: Sequence[np.ndarray], prompt: Prompt, clips: Sequence[ClipFrames] | None = None
    ) -> Any:
        """Tokenised, left-padded model inputs for a batch of clips (one forward pass)."""
        from transformers.video_utils import VideoMetadata

        texts = [self.chat_text(prompt, len(f)) for f in frames_list]
        if not self.video_input:
            return self.processor(
                text=texts, images=[list(f) for f in frames_list], padding=True, return_tensors="pt"
            ).to(self.device)
        metas = []
        for i, frames in enumerate(frames_list):
            n = len(frames)
            c = clips[i] if clips is not None else ClipFrames(fps=1.0, indices=range(n), total_frames=n)
            metas.append(
                VideoMetadata(
                    total_num_frames=int(c.total_frames),
                    fps=float(c.fps),
                    width=int(frames.shape[2]),
                    height=int(frames.shape[1]),
                    duration=float(c.total_frames) / float(c.fps),
                    frames_indices=[int(x) for x in c.indices],
                )
            )
        kwargs: dict[str, Any] = {"video_metadata": metas, "do_sample_frames": False}
        valid = getattr(getattr(self.processor.video_processor, "valid_kwargs", None), "__annotations__", {})
        if "cap_pixels_per_frame" in valid:
            kwargs["cap_pixels_per_frame"] = True  # the reference (qwen-vl-utils) per-frame pixel cap
        inputs = self.processor(
            text=texts, videos=list(frames_list), padding=True, padding_side="left", return_tensors="pt", **kwargs
        )
        return inputs.to(self.device)

    # ---- generation ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        frames_list: Sequence[np.ndarray],
        prompt: Prompt,
        clips: Sequence[ClipFrames] | None = None,
        *,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        **generate_kwargs: Any,
    ) -> list[Generation]:
        """Raw generations, several clips per forward pass.

        Clips are grouped by frame count (SmolVLM pads every video of a batch to the same frame count and
        would then describe padding frames), so a batch never changes what a clip's own input is: under
        greedy decoding the result equals one-at-a-time generation.
        """
        out: list[Generation | None] = [None] * len(frames_list)
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(frames_list):
            if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or len(f) == 0:
                raise ValueError(f"clip {i}: frames must be (N>0,H,W,3) uint8, got {f.shape} {f.dtype}")
            groups.setdefault(len(f), []).append(i)
        gen = {"do_sample": False, "num_beams": 1, **generate_kwargs}
        if not gen["do_sample"]:
            # Greedy: drop sampling knobs a checkpoint's generation_config may carry (they only warn).
            gen.update(temperature=None, top_p=None, top_k=None)
        for idx in groups.values():
            for s in range(0, len(idx), max(1, batch_size)):
                chunk = idx[s : s + batch_size]
                inputs = self.prepare(
                    [frames_list[i] for i in chunk], prompt, [clips[i] for i in chunk] if clips is not None else None
                )
                ids = self.model.generate(
                    **inputs, max_new_tokens=max_new_tokens, pad_token_id=self.pad_id, eos_token_id=self.eos_ids, **gen
                )
                new = ids[:, inputs["input_ids"].shape[1] :].cpu()
                for row, i in zip(new, chunk, strict=True):
                    out[i] = self._decode(row, max_new_tokens)
        return out  # type: ignore[return-value]

    def _decode(self, row: torch.Tensor, max_new_tokens: int) -> Generation:
        is_eos = torch.isin(row, torch.tensor(self.eos_ids, dtype=row.dtype)) if self.eos_ids else None
        if is_eos is not None and bool(is_eos.any()):
            n = int(is_eos.nonzero()[0, 0])
            hit = False
        else:
            n = int(row.numel())
            hit = n >= max_new_tokens
        text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
        return Generation(text=text.strip(), tokens=n, hit_token_limit=hit)

    def caption(
        self,
        frames_list: Sequence[np.ndarray],
        prompt: Prompt,
        clips: Sequence[ClipFrames] | None = None,
        *,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        run_qa: bool = True,
        retry: bool = True,
        language: str | None = "en",
        **generate_kwargs: Any,
    ) -> list[CaptionResult]:
        """Caption each clip ((N,H,W,3) uint8 frames): greedy, batched, QA'd; flagged ones retried once.

        The retry samples with a repetition penalty (RETRY_GENERATION, fixed seed) and more tokens; the result
        with fewer qa_* problems is kept (the first on a tie) and gets the ``retried`` note.
        """
        gens = self.generate(
            frames_list, prompt, clips, max_new_tokens=max_new_tokens, batch_size=batch_size, **generate_kwargs
        )
        results = [self._result(g, prompt, run_qa, language) for g in gens]
        if not (run_qa and retry):
            return results
        redo = [i for i, r in enumerate(results) if r.status == "flagged"]
        if redo:
            with _seeded(RETRY_SEED, self.device):
                again = self.generate(
                    [frames_list[i] for i in redo],
                    prompt,
                    [clips[i] for i in redo] if clips is not None else None,
                    max_new_tokens=int(max_new_tokens * RETRY_TOKEN_FACTOR),
                    batch_size=batch_size,
                    **{**generate_kwargs, **RETRY_GENERATION},
                )
            for i, g in zip(redo, again, strict=True):
                second = self._result(g, prompt, run_qa, language)
                first = results[i]
                n1 = sum(f in qa.RETRY_FLAGS for f in first.flags)
                n2 = sum(f in qa.RETRY_FLAGS for f in second.flags)
                keep = second if n2 < n1 else first
                keep.flags = [*keep.flags, qa.RETRIED]
                results[i] = keep
        return results

    def _result(self, g: Generation, prompt: Prompt, run_qa: bool, language: str | None) -> CaptionResult:
        if not run_qa:
            return CaptionResult(text=g.text, raw=g.text, tokens=g.tokens, prompt=prompt.tag, model=self.name)
        checked = qa.check(g.text, hit_token_limit=g.hit_token_limit, language=language)
        return CaptionResult(
            text=checked.text, raw=g.text, tokens=g.tokens, flags=checked.flags, prompt=prompt.tag, model=self.name
        )


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed torch for a sampled retry without disturbing the caller's RNG state (CPU and this CUDA device)."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
