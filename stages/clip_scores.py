"""CLIP scores: a video-level open_clip image embedding, a LAION aesthetic score, and text-video similarity.

- ``clip_embedding``: each sampled frame is embedded with the open_clip image tower and L2-normalised; the
  clip's embedding is the mean of those, re-normalised (so cosine = dot product), stored as list<float32>.
- ``aesthetic``: the LAION "improved aesthetic predictor" head (github.com/christophschuhmann/
  improved-aesthetic-predictor) applied to that normalised embedding. Architecture, exactly as trained so its
  released weights (``sac+logos+ava1-l14-linearMSE.pth``, for CLIP ViT-L/14 = 768-d) load with strict keys::

      layers = Sequential(Linear(d, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
                          Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1))

  No non-linearities (the released model has none). Output is roughly a 1-10 rating (AVA scale).
- ``clip_text_score(embeddings, texts)``: cosine between stored clip embeddings and caption texts, for after
  captioning (caption-video agreement).

Models load from an open_clip model name + pretrained tag (``ViT-L-14`` + ``openai``; needs the weights in the
Hugging Face cache when offline), a name + local checkpoint file (``pretrained=/path/model.safetensors``), or a
local directory holding ``open_clip_config.json`` + weights (``model=/path/dir``, open_clip's ``local-dir:``).
Missing weights raise :class:`ClipUnavailable` naming the model and how to provide it: this module never scores
with random weights. The pipeline calls :func:`clip_available` once and disables the CLIP stage and the filters
that need it (aesthetic_low) when it returns False.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

CLIP_SCORES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("clip_embedding", pa.list_(pa.float32())),  # L2-normalised mean of normalised frame embeddings
        ("aesthetic", pa.float32()),  # LAION improved-aesthetic-predictor, ~1-10; null without a head
        ("clip_model", pa.string()),  # which model made the embedding ("ViT-L-14/openai", a path, ...)
        ("error_clip_scores", pa.string()),  # "error_clip_scores:<ExceptionType>: message" or null
    ]
)


class ClipUnavailable(RuntimeError):
    """The configured CLIP model or aesthetic head cannot be loaded (weights missing, offline, bad path)."""


@dataclass
class ClipScoresConfig:
    """CLIP stage settings.

    model: open_clip model name ("ViT-L-14"), "hf-hub:org/repo", or a local directory with open_clip_config.json
        and weights (open_clip_model.safetensors / open_clip_pytorch_model.bin ...).
    pretrained: open_clip pretrained tag ("openai", "laion2b_s32b_b82k") or a checkpoint file path, used with a
        model NAME; ignored for directories and hf-hub ids.
    aesthetic_head: path to the improved-aesthetic-predictor weights (.pth / .safetensors) matching the model's
        embedding width (sac+logos+ava1-l14-linearMSE.pth for ViT-L-14); None: no aesthetic score.
    """

    root: str | None = None  # dataset dir OUT; clip_path is relative to it
    enabled: bool = True  # False: no CLIP stage (and no aesthetic filter)
    model: str = "ViT-L-14"
    pretrained: str | None = "openai"
    aesthetic_head: str | None = None
    num_frames: int = 4  # frames embedded per clip (evenly spaced); CLIP barely changes within a shot
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads (None: torch default)
    backend: str = "auto"  # stages.frames.read_frames backend
    # Ray resources the pipeline applies to this stage
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 16


def _is_dir(p: str | None) -> bool:
    return bool(p) and not str(p).startswith("hf-hub:") and Path(str(p)).expanduser().is_dir()


def model_label(cfg: ClipScoresConfig) -> str:
    """Human/provenance label of the configured model: "ViT-L-14/openai", "/path/dir", "hf-hub:org/repo"."""
    if _is_dir(cfg.model) or str(cfg.model).startswith("hf-hub:"):
        return str(cfg.model)
    return f"{cfg.model}/{cfg.pretrained}"


def _how_to_provide(cfg: ClipScoresConfig) -> str:
    return (
        "Provide weights in one of these ways: put them in the Hugging Face cache on a connected machine "
        f"(python -c \"import open_clip; open_clip.create_model('{cfg.model}', pretrained='{cfg.pretrained}')\") "
        "and copy ~/.cache/huggingface; or set clip.pretrained to a local checkpoint file for this model name; or "
        "set clip.model to a directory with open_clip_config.json + open_clip_model.safetensors. Or disable the "
        "CLIP stage (clip.enabled: false); the aesthetic filter is then skipped."
    )


def resolve_weights(cfg: ClipScoresConfig) -> str:
    """Local path of the CLIP weights the config points to, without building the model.

    Raises ClipUnavailable with a clear message when they are not available locally (offline, unknown tag,
    missing file, directory without weights or config).
    """
    import open_clip
    from open_clip.factory import _find_checkpoint_in_dir
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    label = model_label(cfg)
    if _is_dir(cfg.model):
        d = Path(cfg.model).expanduser()
        if not (d / "open_clip_config.json").is_file():
            raise ClipUnavailable(f"CLIP model dir {d} has no open_clip_config.json. {_how_to_provide(cfg)}")
        ckpt = _find_checkpoint_in_dir(d)
        if not ckpt:
            raise ClipUnavailable(
                f"CLIP model dir {d} has no weights (*.safetensors/*.bin/*.pth). {_how_to_provide(cfg)}"
            )
        return ckpt
    if str(cfg.model).startswith("hf-hub:"):
        from open_clip.pretrained import download_pretrained_from_hf

        try:
            return download_pretrained_from_hf(str(cfg.model)[len("hf-hub:") :])
        except Exception as e:
            raise ClipUnavailable(f"CLIP weights for {label} are not available: {e}. {_how_to_provide(cfg)}") from e
    name = str(cfg.model).replace("/", "-")
    if name not in open_clip.list_models():
        raise ClipUnavailable(
            f"unknown open_clip model {cfg.model!r} (not a directory either). {_how_to_provide(cfg)}"
        )
    if not cfg.pretrained:
        raise ClipUnavailable(f"no pretrained weights configured for CLIP model {cfg.model!r}. {_how_to_provide(cfg)}")
    if Path(str(cfg.pretrained)).expanduser().is_file():
        return str(Path(str(cfg.pretrained)).expanduser())
    tag_cfg = get_pretrained_cfg(name, str(cfg.pretrained))
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(name)
        raise ClipUnavailable(
            f"{cfg.pretrained!r} is neither a checkpoint file nor a pretrained tag of {cfg.model} (tags: {known}). "
            + _how_to_provide(cfg)
        )
    try:
        path = download_pretrained(tag_cfg)
    except Exception as e:  # offline (HF_HUB_OFFLINE=1) and not cached, or no network
        raise ClipUnavailable(
            f"CLIP weights for {label} are not available locally ({type(e).__name__}). {_how_to_provide(cfg)}"
        ) from e
    if not path:
        raise ClipUnavailable(f"CLIP weights for {label} could not be located. {_how_to_provide(cfg)}")
    return path


def clip_available(cfg: ClipScoresConfig) -> tuple[bool, str]:
    """Whether the CLIP stage can run with real weights, and a one-line message for the run log.

    Cheap (locates files; does not build the model). Call once per run; when False, skip the CLIP stage and the
    filters that need it (aesthetic_low), and print the message.
    """
    try:
        weights = resolve_weights(cfg)
    except ClipUnavailable as e:
        return False, f"CLIP scoring disabled: {e}"
    msg = f"CLIP scoring on: {model_label(cfg)} (weights {weights})"
    if cfg.aesthetic_head:
        head = Path(cfg.aesthetic_head).expanduser()
        if not head.is_file():
            return False, (
                f"CLIP scoring disabled: aesthetic head {head} not found (the improved-aesthetic-predictor weights, "
                "e.g. sac+logos+ava1-l14-linearMSE.pth for ViT-L-14); fix clip.aesthetic_head or set it to null"
            )
        msg += f"; aesthetic head {head}"
    else:
        msg += "; no aesthetic head configured (aesthetic stays null, the aesthetic filter is skipped)"
    return True, msg


def load_clip(cfg: ClipScoresConfig) -> tuple[Any, Any, Any]:
    """(model in eval mode, image preprocess, tokenizer) for the config; ClipUnavailable if weights are missing.

    require_pretrained=True: open_clip itself refuses to return a randomly initialised model.
    """
    import open_clip

    resolve_weights(cfg)  # clear error first, before open_clip's own (less specific) one
    if _is_dir(cfg.model):
        name, pretrained = f"local-dir:{Path(cfg.model).expanduser()}", None
    else:
        name, pretrained = str(cfg.model), (None if str(cfg.model).startswith("hf-hub:") else cfg.pretrained)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=cfg.device, require_pretrained=True
        )
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:
        raise ClipUnavailable(f"could not load CLIP {model_label(cfg)}: {type(e).__name__}: {e}") from e
    model.eval()
    return model, preprocess, tokenizer


def _aesthetic_mlp(input_size: int):
    import torch.nn as nn

    class AestheticMLP(nn.Module):
        """improved-aesthetic-predictor head (see module docstring); key names match the released weights."""

        def __init__(self, d: int):
            super().__init__()
            self.input_size = d
            self.layers = nn.Sequential(
                nn.Linear(d, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x):
            return self.layers(x)

    return AestheticMLP(input_size)


def aesthetic_head(input_size: int):
    """A fresh (untrained) aesthetic head module, e.g. to train one or to build test fixtures."""
    return _aesthetic_mlp(input_size)


def load_aesthetic_head(path: str | os.PathLike, embed_dim: int | None = None):
    """Load improved-aesthetic-predictor weights (.pth/.pt state dict or .safetensors) into the head, strictly.

    The input width comes from the weights (layers.0.weight); it must equal the CLIP embedding width.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise ClipUnavailable(f"aesthetic head weights not found at {p} (improved-aesthetic-predictor .pth)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    if "layers.0.weight" not in state:
        raise ClipUnavailable(f"{p} is not an improved-aesthetic-predictor state dict (no layers.0.weight)")
    d = int(state["layers.0.weight"].shape[1])
    if embed_dim is not None and d != embed_dim:
        raise ClipUnavailable(
            f"aesthetic head {p} expects {d}-d CLIP embeddings but the CLIP model gives {embed_dim}-d "
            "(the LAION head is for ViT-L-14: 768-d)"
        )
    head = _aesthetic_mlp(d)
    head.load_state_dict(state, strict=True)
    return head.eval()


class ClipScorer:
    """CLIP image embedding + aesthetic score per clip; text-video similarity after captioning.

    Reads: clip_id, clip_path (relative to OUT), num_frames (else probed)
    Writes: clip_embedding (list<float32>), aesthetic, clip_model, error_clip_scores
    Reasons: none (scores only; filters: aesthetic_low, error_clip_scores)

    Raises ClipUnavailable in __init__ when weights are missing (never falls back to random weights); a clip
    that fails to decode gets ``error_clip_scores = "error_clip_scores:<Type>: message"`` and null scores.
    """

    def __init__(self, cfg: ClipScoresConfig | None = None, root: str | os.PathLike | None = None):
        import torch

        self.cfg = cfg or ClipScoresConfig()
        root = root if root is not None else self.cfg.root
        self.root = Path(root) if root is not None else None
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        self.model, self.preprocess, self.tokenizer = load_clip(self.cfg)
        self.label = model_label(self.cfg)
        self.head = (
            load_aesthetic_head(self.cfg.aesthetic_head, self._embed_width()) if self.cfg.aesthetic_head else None
        )
        size = getattr(self.model.visual, "image_size", 224)
        self.decode_size = int(size[0] if isinstance(size, (tuple, list)) else size)

    def _embed_width(self) -> int:
        import torch

        with torch.no_grad():
            return int(self.model.encode_image(torch.zeros(1, 3, *self._image_hw())).shape[-1])

    def _image_hw(self) -> tuple[int, int]:
        size = getattr(self.model.visual, "image_size", 224)
        return tuple(size) if isinstance(size, (tuple, list)) else (size, size)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (D,) float32: mean of L2-normalised frame embeddings, re-normalised."""
        import torch
        from PIL import Image

        x = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames]).to(self.cfg.device)
        with torch.no_grad():
            e = self.model.encode_image(x).float()
        e = torch.nn.functional.normalize(e, dim=-1).mean(0)
        return torch.nn.functional.normalize(e, dim=0).cpu().numpy().astype(np.float32)

    def aesthetic(self, embedding: np.ndarray) -> float | None:
        """Aesthetic score of one normalised embedding (None without a head)."""
        import torch

        if self.head is None:
            return None
        with torch.no_grad():
            return float(self.head(torch.from_numpy(np.asarray(embedding, np.float32))[None]).item())

    def clip_text_score(self, embeddings: np.ndarray | list, texts: list[str]) -> np.ndarray:
        """Cosine similarity of each stored clip embedding with its text (row i with texts[i]); float32 (N,).

        Embeddings must come from this same model (their width is checked). A null embedding gives NaN.
        """
        import torch

        if len(embeddings) != len(texts):
            raise ValueError(f"{len(embeddings)} embeddings but {len(texts)} texts")
        out = np.full(len(texts), np.nan, np.float32)
        idx = [i for i, e in enumerate(embeddings) if e is not None and len(e)]
        if not idx:
            return out
        v = torch.tensor(np.stack([np.asarray(embeddings[i], np.float32) for i in idx]))
        with torch.no_grad():
            t = self.model.encode_text(self.tokenizer([str(texts[i]) for i in idx]).to(self.cfg.device)).float()
        if t.shape[-1] != v.shape[-1]:
            raise ValueError(f"embeddings are {v.shape[-1]}-d but {self.label} text features are {t.shape[-1]}-d")
        v = torch.nn.functional.normalize(v, dim=-1)
        t = torch.nn.functional.normalize(t, dim=-1)
        out[idx] = (v * t.cpu()).sum(-1).numpy()
        return out

    def score_clip(self, path: str | os.PathLike, num_frames: int | None = None) -> dict[str, Any]:
        from stages.frames import read_frames, sample_indices, video_meta

        if not num_frames:
            num_frames = int(video_meta(path)["num_frames"])
        idx = sample_indices(int(num_frames), self.cfg.num_frames)
        frames = read_frames(path, idx, size=self.decode_size, backend=self.cfg.backend)
        emb = self.embed_frames(frames)
        return {"clip_embedding": emb.tolist(), "aesthetic": self.aesthetic(emb)}

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Score a batch; returns a pyarrow Table with exactly CLIP_SCORES_SCHEMA (typed nulls on failure)."""
        rows = []
        for i in range(len(batch["clip_id"])):
            rel = batch["clip_path"][i] if "clip_path" in batch else None
            row: dict[str, Any] = {"clip_id": str(batch["clip_id"][i]), "clip_model": self.label}
            if rel is not None and not (isinstance(rel, float) and math.isnan(rel)):
                path = self.root / str(rel) if self.root is not None else Path(str(rel))
                nf = batch["num_frames"][i] if "num_frames" in batch else None
                try:
                    row.update(self.score_clip(path, int(nf) if nf is not None and nf == nf else None))
                except Exception as e:  # errors are data
                    msg = str(e).replace("\n", " ")[:500]
                    row["error_clip_scores"] = f"error_clip_scores:{type(e).__name__}: {msg}"
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=CLIP_SCORES_SCHEMA)


# The `text_scores` table: CLIP text-video match of a clip's caption (pipeline/schema.py assembles it).
TEXT_SCORES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("clip_text_score", pa.float32()),  # cosine of the clip embedding and the caption's text embedding
        ("text_column", pa.string()),  # which caption was scored (caption_dense, caption_short, original_caption)
        ("clip_model", pa.string()),
    ]
)


class ClipTextScorer:
    """CLIP text-video match after captioning: the stored clip embedding against the caption's text embedding.

    Reads: clip_id, clip_embedding, text (the caption to score), text_column
    Writes: clip_text_score, text_column, clip_model
    Reasons: none (scores only)

    Loads the same CLIP as ClipScorer (weights required, never random); embeddings from another model are refused.
    """

    def __init__(self, cfg: ClipScoresConfig | None = None):
        self.scorer = ClipScorer(dataclasses.replace(cfg or ClipScoresConfig(), aesthetic_head=None))

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        ids = list(batch["clip_id"])
        texts = [str(t) for t in batch["text"]]
        embeddings = [None if e is None else np.asarray(e, np.float32) for e in batch["clip_embedding"]]
        scores = self.scorer.clip_text_score(embeddings, texts)
        return pa.table(
            {
                "clip_id": ids,
                "clip_text_score": pa.array(scores, pa.float32()),
                "text_column": [str(c) for c in batch["text_column"]],
                "clip_model": [self.scorer.label] * len(ids),
            },
            schema=TEXT_SCORES_SCHEMA,
        )
