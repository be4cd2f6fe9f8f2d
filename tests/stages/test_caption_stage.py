"""Caption stage on real clips cut from bikes.mp4, with a TINY RANDOM-WEIGHT SmolVLM2 (the CPU default's family)
built locally and loaded through the production path; plus resume rules, missing models, and Ray Data."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
import torch

from captioner import CaptionerUnavailable, qa
from captioner.tiny_random import build_tiny_random_smolvlm
from stages import frames as frames_mod
from stages.caption import CAPTIONS_SCHEMA, CaptionConfig, CaptionStage, needs_caption, prompt_version

pytest.importorskip("num2words", reason="SmolVLMProcessor needs num2words (a clipforge dependency)")

SHOTS = [(0, 30), (30, 76), (76, 137)]  # the first three shots of bikes.mp4


def write_clip(frames: np.ndarray, path: Path, fps: float = 25) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls on a shared 2-core machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dataset(bikes, tmp_path_factory):
    """OUT/clips/<id>.mp4: the first three shots of bikes.mp4 as clip files (real footage, real H.264)."""
    root = tmp_path_factory.mktemp("out")
    (root / "clips").mkdir()
    full = frames_mod.read_frames(bikes, list(range(SHOTS[-1][1])))
    rows = []
    for k, (a, b) in enumerate(SHOTS):
        write_clip(full[a:b], root / "clips" / f"shot{k}.mp4")
        rows.append({"clip_id": f"shot{k}", "clip_path": f"clips/shot{k}.mp4", "num_frames": b - a, "fps": 25.0})
    return root, rows


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_random_smolvlm(tmp_path_factory.mktemp("tiny_random_smolvlm"))


@pytest.fixture(scope="module")
def cfg(tiny_model, dataset):
    return CaptionConfig(
        model=str(tiny_model),
        root=str(dataset[0]),
        frames_per_clip=4,
        max_new_tokens=12,
        max_new_tokens_short=6,
        batch_size=2,
    )


@pytest.fixture(scope="module")
def stage(cfg):
    return CaptionStage(cfg)


def batch_of(rows: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.array([r.get(k) for r in rows], dtype=object) for k in rows[0]}


def test_tiny_random_stage_writes_caption_columns(stage, dataset, monkeypatch):
    _, rows = dataset
    reads = []
    real_read = frames_mod.read_frames
    monkeypatch.setattr(frames_mod, "read_frames", lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    extra = [
        {"clip_id": "gone", "clip_path": "clips/gone.mp4", "num_frames": 10, "fps": 25.0},
        {"clip_id": "uncut", "clip_path": None, "num_frames": None, "fps": None},
    ]
    table = stage(batch_of(rows + extra))
    assert isinstance(table, pa.Table) and table.schema == CAPTIONS_SCHEMA
    out = {r["clip_id"]: r for r in table.to_pylist()}
    assert len(reads) == 3  # one decode per clip, shared by the dense and the short prompt
    for k in range(3):
        r = out[f"shot{k}"]
        assert r["caption_status"] in ("ok", "flagged")
        assert r["error_caption"] is None
        assert r["caption_model"] == str(stage.cfg.model)
        assert r["caption_prompt_version"] == "dense_v1+short_v1"
        assert r["caption_frames"] == 4
        assert 0 < r["caption_tokens_dense"] <= 18 and 0 < r["caption_tokens_short"] <= 9  # limit x1.5 on retry
        assert isinstance(r["caption_flags"], list)
        assert (r["caption_status"] == "flagged") == any(f in qa.RETRY_FLAGS for f in r["caption_flags"])
        assert isinstance(r["caption_dense"], str) and isinstance(r["caption_short"], str)
        assert r["caption_s"] > 0
    assert out["gone"]["caption_status"] == "error"
    assert out["gone"]["error_caption"].startswith("error_caption:FileNotFoundError:")
    assert out["gone"]["caption_dense"] is None and out["gone"]["caption_tokens_dense"] is None
    assert out["uncut"]["caption_status"] == "skipped_no_clip" and out["uncut"]["error_caption"] is None


def test_tiny_random_stage_matches_captioner_on_the_same_frames(stage, dataset):
    root, rows = dataset
    out = stage(batch_of(rows[:1])).to_pylist()[0]
    frames, clip = stage.sample_clip(root / rows[0]["clip_path"])
    direct = stage.captioner.caption([frames], stage.prompt_dense, [clip], max_new_tokens=12, batch_size=2)[0]
    assert out["caption_dense"] == direct.text
    assert out["caption_tokens_dense"] == direct.tokens
    # evenly spaced over the 30-frame clip
    assert clip.indices == frames_mod.sample_indices(30, 4) and clip.total_frames == 30


def test_tiny_random_stage_resume_passes_existing_captions_through(stage, cfg, dataset, monkeypatch):
    _, rows = dataset
    first = stage(batch_of(rows[:2])).to_pylist()
    calls = []
    monkeypatch.setattr(stage.captioner, "caption", lambda *a, **k: calls.append(1) or [])
    again = stage(batch_of([{**r, **f} for r, f in zip(rows[:2], first, strict=True)]))
    assert calls == []  # nothing regenerated
    assert again.to_pylist() == first


def test_needs_caption(cfg):
    done = {"caption_status": "ok", "caption_model": cfg.model, "caption_prompt_version": prompt_version(cfg)}
    assert needs_caption(None, cfg)
    assert not needs_caption(done, cfg)
    assert not needs_caption({**done, "caption_status": "flagged"}, cfg)
    assert needs_caption({**done, "caption_status": "error"}, cfg)
    assert needs_caption({**done, "caption_status": "skipped_no_model"}, cfg)
    assert needs_caption({**done, "caption_model": "Qwen/Qwen2.5-VL-7B-Instruct"}, cfg)
    assert needs_caption({**done, "caption_prompt_version": "dense_v2+short_v1"}, cfg)
    from dataclasses import replace

    assert needs_caption(done, replace(cfg, recaption=True))
    assert needs_caption(done, replace(cfg, prompt_short=None))  # version "dense_v1" != "dense_v1+short_v1"


def test_missing_model_skips_rows_or_raises(dataset, monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    root, rows = dataset
    cfg = CaptionConfig(model="HuggingFaceTB/SmolVLM2-256M-Video-Instruct", root=str(root))
    stage = CaptionStage(cfg)
    out = stage(batch_of(rows[:1])).to_pylist()[0]
    assert out["caption_status"] == "skipped_no_model"
    assert "SmolVLM2-256M-Video-Instruct" in out["error_caption"] and "hf download" in out["error_caption"]
    assert out["caption_dense"] is None
    assert needs_caption(out, cfg)  # captioned later, once the weights are there
    with pytest.raises(CaptionerUnavailable, match="SmolVLM2-256M-Video-Instruct"):
        CaptionStage(CaptionConfig(model=cfg.model, root=str(root), on_missing_model="error"))


def test_tiny_random_stage_in_ray_data(ray_local, cfg, dataset):
    import ray

    _, rows = dataset
    items = rows + [{"clip_id": "gone", "clip_path": "clips/gone.mp4", "num_frames": 10, "fps": 25.0}]
    ds = ray.data.from_items(items).map_batches(
        CaptionStage,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,  # one of the session's 2 CPUs: leaves headroom for the read tasks
    )
    out = {r["clip_id"]: r for r in ds.take_all()}
    assert sorted(out) == ["gone", "shot0", "shot1", "shot2"]
    assert out["gone"]["caption_status"] == "error"
    for k in range(3):
        r = out[f"shot{k}"]
        assert r["caption_status"] in ("ok", "flagged") and r["caption_model"] == cfg.model
        assert r["caption_dense"] is not None and r["caption_frames"] == 4
        assert list(r["caption_flags"]) == [str(f) for f in r["caption_flags"]]


def test_tiny_random_stage_isolates_a_clip_that_breaks_generation(stage, dataset, monkeypatch):
    """A batched call that raises (e.g. out of memory) is redone clip by clip; only the bad clip errors."""
    _, rows = dataset
    real = stage.captioner.caption
    bad = stage.sample_clip(dataset[0] / rows[1]["clip_path"])[0]

    def flaky(frames_list, *a, **k):
        if any(f.shape == bad.shape and np.array_equal(f, bad) for f in frames_list):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(frames_list, *a, **k)

    monkeypatch.setattr(stage.captioner, "caption", flaky)
    out = {r["clip_id"]: r for r in stage(batch_of(rows)).to_pylist()}
    assert out["shot1"]["caption_status"] == "error"
    assert out["shot1"]["error_caption"] == "error_caption:RuntimeError: CUDA out of memory (simulated)"
    assert out["shot0"]["caption_status"] in ("ok", "flagged") and out["shot2"]["caption_status"] in ("ok", "flagged")
