"""Text rewriter / prompt upsampler on a TINY RANDOM-WEIGHT Qwen2-style chat LM built locally and loaded through
the production ``load_rewriter`` path: chat-template prompts, batching, QA fallback to the input, errors."""

from __future__ import annotations

import pytest
import torch

from captioner import CaptionerUnavailable, load_prompt
from captioner.enhance import Rewriter, load_rewriter
from captioner.tiny_random import build_tiny_random_chat_lm

CAPTIONS = [
    "A man rides a bike down a dirt trail.",
    "Two dogs play in the snow while the camera pans left.",
    "A city street at night, wet asphalt reflecting neon signs.",
]


@pytest.fixture(scope="module")
def rewriter(tmp_path_factory) -> Rewriter:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_rewriter(build_tiny_random_chat_lm(tmp_path_factory.mktemp("tiny_random_chat_lm")))
    torch.set_num_threads(n)


def test_tiny_random_rewriter_chat_prompt(rewriter):
    text = rewriter.chat_text(load_prompt("enhance_v1"), CAPTIONS[0])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith(f"Caption: {CAPTIONS[0]}<|im_end|>\n<|im_start|>assistant\n")
    assert "{caption}" not in text


def test_tiny_random_rewrite_batched_equals_single(rewriter):
    batched = rewriter.rewrite(CAPTIONS, max_new_tokens=12, batch_size=3)
    single = [rewriter.rewrite([c], max_new_tokens=12)[0] for c in CAPTIONS]
    assert [r.raw for r in batched] == [r.raw for r in single]
    for src, r in zip(CAPTIONS, batched, strict=True):
        assert r.prompt == "enhance_v1" and 0 < r.tokens <= 12
        # random weights: the rewrite is gibberish, QA flags it and the input caption is kept
        if r.used_input:
            assert r.text == src and any(f.startswith("qa_") for f in r.flags)
        else:
            assert r.text and not any(f.startswith("qa_") for f in r.flags)


def test_tiny_random_upsample_uses_upsample_prompt(rewriter):
    out = rewriter.upsample(["a corgi surfing"], max_new_tokens=8)
    assert out[0].prompt == "upsample_v1" and out[0].tokens <= 8


def test_missing_rewriter_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(CaptionerUnavailable, match=r"rewriter model 'Qwen/Qwen2.5-1.5B-Instruct'.*hf download"):
        load_rewriter("Qwen/Qwen2.5-1.5B-Instruct")
