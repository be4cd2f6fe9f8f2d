"""CLIP stage: the production loading code on tiny RANDOM-weight open_clip models saved locally (no hub here),
real decoding of real footage, and the clear "unavailable" path for weights that cannot be had offline."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from stages.clip_scores import (
    CLIP_SCORES_SCHEMA,
    ClipScorer,
    ClipScoresConfig,
    ClipUnavailable,
    aesthetic_head,
    clip_available,
    load_aesthetic_head,
)


def _tiny_cfg(clip_dir) -> dict:
    return json.loads((clip_dir / "open_clip_config.json").read_text())["model_cfg"]


@pytest.fixture(scope="module")
def tiny_random_head(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("head") / "tiny_random_aesthetic.pth"
    torch.save(aesthetic_head(32).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_random_scorer(tiny_random_clip_dir, tiny_random_head, bikes):
    cfg = ClipScoresConfig(
        root=str(bikes.parent), model=str(tiny_random_clip_dir), aesthetic_head=str(tiny_random_head)
    )
    return ClipScorer(cfg)


def test_tiny_random_clip_loads_from_local_dir_and_scores_real_clips(tiny_random_scorer, bikes, carphone):
    batch = {
        "clip_id": np.array(["bikes", "carphone", "gone"], dtype=object),
        "clip_path": np.array([bikes.name, str(carphone), "gone.mp4"], dtype=object),
    }
    table = tiny_random_scorer(batch)
    assert table.schema == CLIP_SCORES_SCHEMA
    rows = table.to_pylist()
    for r in rows[:2]:
        e = np.array(r["clip_embedding"], np.float32)
        assert e.shape == (32,) and abs(np.linalg.norm(e) - 1) < 1e-4
        assert r["aesthetic"] is not None and np.isfinite(r["aesthetic"])
        assert r["error_clip_scores"] is None
    # different footage -> different embeddings (the frames really went through the model)
    assert not np.allclose(rows[0]["clip_embedding"], rows[1]["clip_embedding"], atol=1e-3)
    assert rows[2]["clip_embedding"] is None and rows[2]["aesthetic"] is None
    assert rows[2]["error_clip_scores"].startswith("error_clip_scores:FileNotFoundError")


def test_tiny_random_embedding_is_mean_of_normalised_frame_embeddings(tiny_random_scorer, bikes):
    from stages.frames import read_frames

    frames = read_frames(bikes, [10, 100, 200], size=32)
    e = tiny_random_scorer.embed_frames(frames)
    singles = np.stack([tiny_random_scorer.embed_frames(f[None]) for f in frames])
    mean = singles.mean(0)
    assert np.allclose(e, mean / np.linalg.norm(mean), atol=1e-5)
    # the aesthetic head is applied to exactly that embedding
    with torch.no_grad():
        ref = tiny_random_scorer.head(torch.from_numpy(e)[None]).item()
    assert tiny_random_scorer.aesthetic(e) == pytest.approx(ref)


def test_tiny_random_clip_text_score_is_cosine(tiny_random_scorer):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 32)).astype(np.float32)
    texts = ["a cyclist in the city", "a rabbit", "a man on the phone"]
    s = tiny_random_scorer.clip_text_score(list(emb) + [None], texts + ["no embedding"])
    with torch.no_grad():
        t = tiny_random_scorer.model.encode_text(tiny_random_scorer.tokenizer(texts)).float().numpy()
    ref = (emb / np.linalg.norm(emb, axis=1, keepdims=True) * (t / np.linalg.norm(t, axis=1, keepdims=True))).sum(1)
    assert np.allclose(s[:3], ref, atol=1e-5) and np.isnan(s[3])
    with pytest.raises(ValueError):
        tiny_random_scorer.clip_text_score(emb[:2], texts)


def test_tiny_random_clip_also_loads_as_name_plus_checkpoint_file(tiny_random_clip_dir):
    import open_clip

    cfg_file = tiny_random_clip_dir.parent / "tiny-random-test.json"
    cfg_file.write_text(json.dumps(_tiny_cfg(tiny_random_clip_dir)))
    open_clip.add_model_config(cfg_file)  # registers the architecture name "tiny-random-test"
    ckpt = str(tiny_random_clip_dir / "open_clip_model.safetensors")
    ok, msg = clip_available(ClipScoresConfig(model="tiny-random-test", pretrained=ckpt, aesthetic_head=None))
    assert ok and ckpt in msg and "AESTHETIC FILTER OFF" in msg
    scorer = ClipScorer(ClipScoresConfig(model="tiny-random-test", pretrained=ckpt, aesthetic_head=None))
    ref = ClipScorer(ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=None))
    frames = np.random.default_rng(0).integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)
    assert np.allclose(scorer.embed_frames(frames), ref.embed_frames(frames), atol=1e-6)  # same weights loaded
    assert scorer.head is None and scorer.aesthetic(scorer.embed_frames(frames)) is None


def test_unavailable_weights_are_a_clear_error_never_random(tmp_path, monkeypatch, tiny_random_clip_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ok, msg = clip_available(ClipScoresConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    assert not ok and "ViT-B-32/laion2b_s34b_b79k" in msg and "local checkpoint" in msg
    with pytest.raises(ClipUnavailable, match="ViT-B-32"):
        ClipScorer(ClipScoresConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    # a directory with a config but no weights must not silently build a random model
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": _tiny_cfg(tiny_random_clip_dir)}))
    with pytest.raises(ClipUnavailable, match="no weights"):
        ClipScorer(ClipScoresConfig(model=str(tmp_path)))
    assert not clip_available(ClipScoresConfig(model="ViT-B-32", pretrained=None))[0]
    assert not clip_available(ClipScoresConfig(model="not-a-model", pretrained="x"))[0]


def test_tiny_random_aesthetic_head_width_must_match(tiny_random_clip_dir, tmp_path):
    head = tmp_path / "l14_shaped_random.pth"
    torch.save(aesthetic_head(768).state_dict(), head)
    with pytest.raises(ClipUnavailable, match="768-d"):
        ClipScorer(ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=str(head)))
    ok, msg = clip_available(
        ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=str(tmp_path / "nope.pth"))
    )
    assert not ok and "aesthetic head" in msg
    # the head's state-dict keys are the released improved-aesthetic-predictor's
    assert list(aesthetic_head(768).state_dict()) == [
        f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")
    ]
    assert load_aesthetic_head(head).layers[0].in_features == 768


def test_tiny_random_clip_scorer_in_ray(ray_local, tiny_random_clip_dir, bikes):
    import ray

    ds = ray.data.from_items([{"clip_id": "b", "clip_path": str(bikes)}]).map_batches(
        ClipScorer,
        fn_constructor_kwargs={"cfg": ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=None)},
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
    )
    (row,) = ds.take_all()
    assert len(row["clip_embedding"]) == 32 and row["aesthetic"] is None and row["error_clip_scores"] is None
    assert pa.array([row["clip_model"]]).to_pylist() == [str(tiny_random_clip_dir)]
