"""Optional text-only LLM pass over captions, and prompt upsampling for the DiT sampler.

- ``Rewriter.rewrite(captions)``: a VLM caption -> a fluent dense caption (prompt ``enhance_v1``), keeping facts.
- ``Rewriter.upsample(prompts)``: a short user prompt -> a dense caption in the training captions' style
  (prompt ``upsample_v1``), as DALL-E 3 does at sampling time so the DiT sees in-distribution text.

Any chat LLM that transformers loads with ``AutoModelForCausalLM`` works, by id or local directory
(e.g. ``Qwen/Qwen2.5-1.5B-Instruct`` on CPU, ``Qwen/Qwen2.5-7B-Instruct`` on a GPU). Generation is batched with
left padding and greedy by default; the rewrite is QA-checked like captions, and a rewrite with problems keeps
the input text instead (``Rewrite.used_input``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from captioner import qa
from captioner.model import (
    CaptionerUnavailable,
    captioner_available,
    how_to_provide,
    pick_attention,
    pick_device,
    pick_dtype,
)
from captioner.prompt import Prompt, load_prompt

DEFAULT_REWRITER_CPU = "Qwen/Qwen2.5-1.5B-Instruct"
DEFAULT_REWRITER_GPU = "Qwen/Qwen2.5-7B-Instruct"


@dataclass
class Rewrite:
    """One rewritten text: ``text`` is the rewrite, or the input when the rewrite failed QA."""

    text: str
    raw: str
    tokens: int
    flags: list[str] = field(default_factory=list)
    used_input: bool = False
    prompt: str = ""


class Rewriter:
    """A loaded text LLM + tokenizer with its chat template."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.tokenizer.padding_side = "left"
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    def chat_text(self, prompt: Prompt, caption: str) -> str:
        """The model's chat template applied to the instruction with ``{caption}`` filled in."""
        content = prompt.text.replace("{caption}", caption.strip())
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )

    @torch.inference_mode()
    def run(
        self,
        texts: Sequence[str],
        prompt: Prompt | str,
        *,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        language: str | None = "en",
        **generate_kwargs: Any,
    ) -> list[Rewrite]:
        """Apply a rewrite prompt (a ``{caption}`` template) to each text, batched; QA each output."""
        p = load_prompt(prompt) if isinstance(prompt, str) else prompt
        gen = {"do_sample": False, "num_beams": 1, **generate_kwargs}
        if not gen["do_sample"]:
            gen.update(temperature=None, top_p=None, top_k=None)
        out: list[Rewrite] = []
        for s in range(0, len(texts), max(1, batch_size)):
            chunk = list(texts[s : s + batch_size])
            enc = self.tokenizer(
                [self.chat_text(p, t) for t in chunk], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            ids = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, pad_token_id=self.pad_id, eos_token_id=self.eos_ids, **gen
            )
            for src, row in zip(chunk, ids[:, enc["input_ids"].shape[1] :].cpu(), strict=True):
                is_eos = torch.isin(row, torch.tensor(self.eos_ids, dtype=row.dtype))
                n = int(is_eos.nonzero()[0, 0]) if bool(is_eos.any()) else int(row.numel())
                raw = self.tokenizer.decode(row[:n], skip_special_tokens=True).strip()
                hit = not bool(is_eos.any()) and n >= max_new_tokens
                checked = qa.check(raw, hit_token_limit=hit, language=language)
                bad = bool(checked.problems)
                out.append(
                    Rewrite(
                        text=src if bad else checked.text,
                        raw=raw,
                        tokens=n,
                        flags=checked.flags,
                        used_input=bad,
                        prompt=p.tag,
                    )
                )
        return out

    def rewrite(self, captions: Sequence[str], prompt: Prompt | str = "enhance_v1", **kw: Any) -> list[Rewrite]:
        """Rewrite/expand VLM captions into the dense style (facts kept)."""
        return self.run(captions, prompt, **kw)

    def upsample(self, prompts: Sequence[str], prompt: Prompt | str = "upsample_v1", **kw: Any) -> list[Rewrite]:
        """Short user prompts -> dense captions for the DiT sampler."""
        return self.run(prompts, prompt, **kw)


def load_rewriter(
    model_id_or_path: str | Path, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> Rewriter:
    """Load a chat LLM by Hugging Face id or local directory (same availability rules and errors as the VLM)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(model_id_or_path)
    ok, why = captioner_available(name)
    if not ok:
        raise CaptionerUnavailable(why.replace("captioner model", "rewriter model"))
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    src = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    try:
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dt, attn_implementation=pick_attention(dev, dt))
    except OSError as e:
        raise CaptionerUnavailable(
            f"rewriter model {name!r} could not be loaded ({type(e).__name__}: {e}). {how_to_provide(name)}"
        ) from e
    if getattr(tok, "chat_template", None) is None:
        raise ValueError(f"rewriter model {name!r} has no chat template; use an instruction-tuned (chat) model")
    model.to(dev).eval()
    return Rewriter(model, tok, name=name, device=dev)
