"""Captioner on TINY RANDOM-WEIGHT VLMs of two real families (SmolVLM2 = the CPU default's family, Qwen2.5-VL =
the GPU default's), built from configs, saved to a directory and loaded through the production ``load()``.

Their captions are gibberish (random weights); what is tested is the machinery: chat-template prompts, frame
input, left padding, batched == one-at-a-time under greedy decoding, QA + the retry-once rule, and errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import captioner
from captioner import ClipFrames, load_prompt, qa
from captioner.model import CaptionerUnavailable, captioner_available, pick_attention, pick_dtype
from captioner.tiny_random import (
    build_tiny_random_qwen2_5_vl,
    build_tiny_random_qwen3_vl,
    build_tiny_random_smolvlm,
)
from stages.frames import read_frames, sample_indices, video_meta

pytest.importorskip("num2words", reason="SmolVLMProcessor needs num2words (a clipforge dependency)")

FAMILIES = {"smolvlm": build_tiny_random_smolvlm, "qwen2_5_vl": build_tiny_random_qwen2_5_vl}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Tiny matmuls: a second intra-op thread only adds contention on a shared 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request, tmp_path_factory):
    path = FAMILIES[request.param](tmp_path_factory.mktemp(f"tiny_random_{request.param}"))
    return request.param, path, captioner.load(path)


@pytest.fixture(scope="module")
def bikes_clips(bikes):
    """Frames of four real shots of bikes.mp4 (cuts at 30, 76, 137, 187), 4 evenly spaced frames each at two
    decode sizes, with the real fps and frame indices."""
    meta = video_meta(bikes)
    shots = [(0, 30), (30, 76), (76, 137), (137, 187)]
    frames, clips = [], []
    for k, (a, b) in enumerate(shots):
        idx = sample_indices(meta["num_frames"], 4, start=a, end=b)
        # two decode sizes, so Qwen batches mix token counts and need left padding
        size = (160, 68) if k % 2 else (24, 16)
        frames.append(read_frames(bikes, idx, size=size))
        clips.append(ClipFrames(fps=meta["fps"], indices=[i - a for i in idx], total_frames=b - a))
    return frames, clips


def test_tiny_random_loads_through_production_path(tiny):
    family, path, cap = tiny
    assert cap.family == family
    assert cap.device.type == "cpu" and cap.dtype == torch.float32
    assert cap.attn_implementation == "sdpa"
    assert cap.video_input
    assert cap.name == str(path)
    assert captioner_available(str(path)) == (True, f"local directory {path}")


def test_chat_template_prompt(tiny):
    family, _, cap = tiny
    p = load_prompt("dense_v1")
    text = cap.chat_text(p)
    assert p.text in text
    if family == "smolvlm":
        assert text == f"<|im_start|>User: <video>{p.text}<end_of_utterance>\nAssistant:"
    else:
        assert text == (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|video_pad|><|vision_end|>{p.text}<|im_end|>\n<|im_start|>assistant\n"
        )


def test_frames_become_video_tokens_with_timestamps(tiny, bikes_clips):
    family, _, cap = tiny
    frames, clips = bikes_clips
    inputs = cap.prepare(frames[:1], load_prompt("short_v1"), clips[:1])
    ids = inputs["input_ids"][0].tolist()
    tok = cap.tokenizer
    if family == "smolvlm":
        # 4 frames x image_seq_len (4) image tokens, and the frame timestamps from the real indices/fps
        assert ids.count(tok.convert_tokens_to_ids("<image>")) == 4 * cap.processor.image_seq_len
        text = tok.decode(inputs["input_ids"][0])
        assert "four frames" in text and "Frame from 00:00" in text
        assert tuple(inputs["pixel_values"].shape[:2]) == (1, 4)
    else:
        t, h, w = inputs["video_grid_thw"][0].tolist()
        assert t == 2  # 4 frames / temporal patch 2
        assert ids.count(tok.convert_tokens_to_ids("<|video_pad|>")) == t * h * w // 4


def test_batches_are_left_padded(tiny, bikes_clips):
    family, _, cap = tiny
    frames, clips = bikes_clips
    mask = cap.prepare(frames, load_prompt("dense_v1"), clips)["attention_mask"]
    assert bool(mask[:, -1].all())  # every row ends with its last prompt token
    if family == "qwen2_5_vl":
        assert not bool(mask[:, 0].all())  # two sizes -> two token counts -> padding, on the left


def test_tiny_random_batched_equals_one_at_a_time(tiny, bikes_clips):
    _, _, cap = tiny
    frames, clips = bikes_clips
    # a 6-frame clip in the same call: grouped apart by frame count, order of results preserved
    frames = [*frames, np.concatenate([frames[0], frames[0][:2]])]
    clips = [*clips, ClipFrames(fps=25.0, indices=[0, 5, 10, 15, 20, 25], total_frames=30)]
    p = load_prompt("dense_v1")
    batched = cap.generate(frames, p, clips, max_new_tokens=20, batch_size=3)
    single = [cap.generate([f], p, [c], max_new_tokens=20)[0] for f, c in zip(frames, clips, strict=True)]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.tokens for g in batched] == [g.tokens for g in single]
    # the frames matter: not every clip gets the same caption
    assert len({g.text for g in single}) > 1


def test_tiny_random_generation_reports_token_limit(tiny, bikes_clips):
    _, _, cap = tiny
    frames, clips = bikes_clips
    gens = cap.generate(frames, load_prompt("dense_v1"), clips, max_new_tokens=3)
    for g in gens:
        assert g.tokens <= 3
        assert g.hit_token_limit == (g.tokens == 3)


def test_tiny_random_retry_once_on_flagged(tiny, bikes_clips, monkeypatch):
    _, _, cap = tiny
    frames, clips = bikes_clips
    calls = []
    real = cap.generate

    def spy(frames_list, prompt, clips=None, **kw):
        calls.append((len(frames_list), kw))
        return real(frames_list, prompt, clips, **kw)

    monkeypatch.setattr(cap, "generate", spy)
    # 4 new tokens can't finish a caption: every first pass is cut at the limit (or looks broken)
    results = cap.caption(frames, load_prompt("dense_v1"), clips, max_new_tokens=4)
    first = [r for r in results]
    assert len(calls) == 2  # one pass, one retry pass for the flagged ones - never more
    n_flagged_first = calls[1][0]
    assert 1 <= n_flagged_first <= len(frames)
    assert calls[0][1].get("do_sample") is None  # greedy first
    assert calls[1][1]["do_sample"] is True and calls[1][1]["repetition_penalty"] > 1.0
    assert calls[1][1]["max_new_tokens"] == 6  # 1.5x for the retry
    assert sum(qa.RETRIED in r.flags for r in first) == n_flagged_first
    for r in first:
        assert r.prompt == "dense_v1" and r.model == cap.name
        assert r.status in ("ok", "flagged")
        assert r.flags.count(qa.RETRIED) <= 1


def test_tiny_random_no_retry_when_disabled(tiny, bikes_clips, monkeypatch):
    _, _, cap = tiny
    frames, clips = bikes_clips
    calls = []
    real = cap.generate
    monkeypatch.setattr(cap, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = cap.caption(frames[:2], load_prompt("dense_v1"), clips[:2], max_new_tokens=4, retry=False)
    assert len(calls) == 1
    assert all(qa.RETRIED not in r.flags for r in res)


def test_tiny_random_frames_as_images(tiny, bikes_clips):
    family, path, _ = tiny
    cap = captioner.load(path, frames_as="images")
    frames, clips = bikes_clips
    p = load_prompt("short_v1")
    image_token = "<image>" if family == "smolvlm" else "<|image_pad|>"
    assert cap.chat_text(p, 4).count(image_token) == 4  # one image per frame
    batched = cap.generate(frames, p, clips, max_new_tokens=8, batch_size=4)
    single = [cap.generate([f], p, [c], max_new_tokens=8)[0] for f, c in zip(frames, clips, strict=True)]
    assert [g.text for g in batched] == [g.text for g in single]


def test_tiny_random_qwen3_vl_timestamps_and_batching(tmp_path, bikes_clips):
    """A third family through the same path: Qwen3-VL prints per-frame timestamps from the clip's real fps."""
    cap = captioner.load(build_tiny_random_qwen3_vl(tmp_path / "tiny_random_qwen3_vl"))
    assert cap.family == "qwen3_vl"
    frames, clips = bikes_clips
    p = load_prompt("short_v1")
    text = cap.tokenizer.decode(cap.prepare(frames[:1], p, clips[:1])["input_ids"][0])
    # frames 3, 11, 18, 26 of the shot at 25 fps, merged in temporal pairs: (3+11)/2/25, (18+26)/2/25
    assert [clips[0].indices[i] for i in range(4)] == [3, 11, 18, 26]
    assert "<0.3 seconds>" in text and "<0.9 seconds>" in text
    batched = cap.generate(frames, p, clips, max_new_tokens=8, batch_size=4)
    single = [cap.generate([f], p, [c], max_new_tokens=8)[0] for f, c in zip(frames, clips, strict=True)]
    assert [g.text for g in batched] == [g.text for g in single]


def test_bad_frames_raise(tiny):
    _, _, cap = tiny
    with pytest.raises(ValueError, match="uint8"):
        cap.generate([np.zeros((2, 8, 8, 3), np.float32)], load_prompt("short_v1"))


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    ok, why = captioner_available(captioner.DEFAULT_CPU_MODEL)
    assert not ok and captioner.DEFAULT_CPU_MODEL in why and "hf download" in why
    with pytest.raises(CaptionerUnavailable, match=r"SmolVLM2-256M-Video-Instruct.*hf download"):
        captioner.load(captioner.DEFAULT_CPU_MODEL)
    with pytest.raises(CaptionerUnavailable, match="does not exist"):
        captioner.load(tmp_path / "nowhere" / "model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(CaptionerUnavailable, match="no weight files"):
        captioner.load(tmp_path / "empty")


def test_machine_defaults():
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    assert pick_attention(torch.device("cpu"), torch.float32) == "sdpa"
    assert captioner.default_model("cpu") == captioner.DEFAULT_CPU_MODEL
    assert captioner.default_model("cuda") == captioner.DEFAULT_GPU_MODEL
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as reg

    assert "smolvlm" in reg and "qwen2_5_vl" in reg and "qwen3_vl" in reg  # the installed transformers has them
