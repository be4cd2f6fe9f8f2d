"""TINY RANDOM-WEIGHT models for tests and benchmarks only: never used by a production path.

Weights cannot be downloaded here, so tests build miniature models of the real families from configs, with a
byte-level BPE tokenizer trained offline on a few sentences plus the special tokens each family's processor
needs, and the family's real chat template. They are saved to a directory and then loaded through the
production ``captioner.load(path)`` / ``captioner.enhance.load_rewriter(path)``: the same code path a real
checkpoint takes. Their captions are gibberish by construction (random weights).
"""

from __future__ import annotations

from pathlib import Path

# Qwen2.5-VL-7B-Instruct's chat_template (as published with the model).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-Instruct-style ChatML (text LLMs) without the tool-calling branches.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# 10x the usual 0.02: with tiny widths the default init barely lets the frames move the logits, and tests
# need captions that differ per clip (and sometimes stop early) to show batching changes nothing.
INIT_STD = 0.2

_CORPUS = [
    "A man in a red jacket rides a mountain bike down a dirt trail through a pine forest.",
    "The camera tracks alongside the rider in a low angle shot, with warm afternoon light.",
    "Describe this video in detail as one paragraph of flowing prose, covering the camera movement.",
    "User Assistant system You are a helpful assistant. The scene is bright and sharp, live action.",
]


def _tokenizer(special: list[str], **named: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def smolvlm_tokenizer():
    """An offline-trained tokenizer with SmolVLM2's special tokens (for the tiny random builders and the bench)."""
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>"]
    special += ["<global-img>", "<video>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = _tokenizer(
        special,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "video_token": "<video>",
            "end_of_utterance_token": "<end_of_utterance>",
        },
    )
    return tok


def build_tiny_random_smolvlm(out_dir: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """A miniature SmolVLM2 (model_type smolvlm: SigLIP-style vision + Llama text), random weights."""
    import torch
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    tok = smolvlm_tokenizer()
    edge = {"longest_edge": image_size}
    patch, scale = 8, 2
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, max_image_size=edge, size=edge),
        tokenizer=tok,
        video_processor=SmolVLMVideoProcessor(
            max_image_size=edge, size=edge, video_sampling={"fps": 1, "max_frames": 16, "video_size": edge}
        ),
        image_seq_len=((image_size // patch) ** 2) // (scale**2),
        chat_template=DEFAULT_CHAT_TEMPLATE,  # SmolVLM2's published template (video-aware)
    )
    config = SmolVLMConfig(
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch,
            "initializer_range": INIT_STD,
        },
        text_config={
            "model_type": "llama",
            "initializer_range": INIT_STD,
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
    )
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(config)
    return _save(model, processor, out_dir, tok)


def build_tiny_random_qwen2_5_vl(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A miniature Qwen2.5-VL (model_type qwen2_5_vl: windowed ViT + M-RoPE Qwen2 text), random weights."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    special += ["<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    patch, merge = 4, 2
    factor = patch * merge
    pixels = {"min_pixels": factor * factor * 2, "max_pixels": factor * factor * 12}
    geometry = {"patch_size": patch, "merge_size": merge, "temporal_patch_size": 2}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**geometry, **pixels),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(**geometry, **pixels),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "patch_size": patch,
            "spatial_merge_size": merge,
            "temporal_patch_size": 2,
            "window_size": 16,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [1],
            "initializer_range": INIT_STD,
        },
        text_config={
            "initializer_range": INIT_STD,
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return _save(model, processor, out_dir, tok)


def build_tiny_random_qwen3_vl(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A miniature Qwen3-VL (model_type qwen3_vl: DeepStack ViT, interleaved M-RoPE, per-frame timestamps in the
    prompt), random weights. Chat template: the Qwen2.5-VL one (the video placeholder it emits is the same)."""
    import torch
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    special += ["<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    geometry = {"patch_size": 4, "merge_size": 2, "temporal_patch_size": 2}
    size = {"size": {"shortest_edge": 128, "longest_edge": 768}}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**geometry, **size),
        tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(**geometry, **size),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    config = Qwen3VLConfig(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "patch_size": 4,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 32,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
            "initializer_range": INIT_STD,
        },
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "max_position_embeddings": 4096,
            "initializer_range": INIT_STD,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [1, 1, 2],
                "mrope_interleaved": True,
                "rope_theta": 10000.0,
            },
            "pad_token_id": ids["<|endoftext|>"],
        },
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    return _save(model, processor, out_dir, tok)


def build_tiny_random_chat_lm(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A miniature Qwen2-style causal chat LM (for captioner.enhance), random weights, ChatML template."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        initializer_range=INIT_STD,
        bos_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _save(model, processor, out_dir: str | Path, tok) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
