"""Buckets, caption choice, the bucket-aware sampler and the clip encoder on real footage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.buckets import Bucket, BucketSet, resize_crop
from training.data import BucketBatchSampler, ClipEncoder, ShardDataset, choose_caption, collate, condition_masks
from training.demo import demo_dataset, make_demo_clips
from training.video import read_clip_frames

GRID = {"resolutions": [32, 64], "aspect_ratios": ["1:1", "16:9"], "frames": [1, 8, 16], "multiple": 16}


def test_bucket_grid_and_largest_fit_without_upscaling():
    bs = BucketSet.from_config(GRID)
    assert Bucket(16, 48, 80) in bs.buckets and Bucket(1, 32, 32) in bs.buckets  # 64 @ 16:9 -> 48x80 (mult 16)
    assert bs.assign(640, 272, 46) == Bucket(16, 48, 80)  # bikes shot: wide, long enough, large enough
    assert bs.assign(640, 272, 10) == Bucket(8, 48, 80)  # too short for 16 frames
    assert bs.assign(176, 144, 120) == Bucket(16, 64, 64)  # carphone is nearly square
    assert bs.assign(176, 144, 1) == Bucket(1, 64, 64)  # an image goes to an image bucket
    assert bs.assign(60, 40, 30) == Bucket(16, 32, 48)  # 3:2 is nearest 16:9 (32x48 at resolution 32)
    assert bs.assign(47, 32, 30) == Bucket(16, 32, 32)  # too narrow for 32x48: falls back to the next ratio
    assert bs.assign(20, 20, 30) is None  # smaller than every bucket: never upscaled
    for w, h, n in [(640, 272, 46), (176, 144, 120), (60, 40, 30), (47, 32, 30)]:
        b = bs.assign(w, h, n)
        assert b.height <= h and b.width <= w and b.frames <= n


def test_grid_buckets_of_one_named_ratio_stay_one_family_after_rounding():
    """16:9 at 128 rounds to 96x176 (1.83) and at 256 to 192x336 (1.75): still one family, so a wide clip takes the
    largest of them it fills, not the smallest (a newcomer's find), and the family survives to_config."""
    bs = BucketSet.from_config({"resolutions": [128, 256], "aspect_ratios": ["16:9", "1:1"], "frames": [33]})
    for w, h in [(640, 272), (1280, 544), (1920, 1080)]:
        assert bs.assign(w, h, 60) == Bucket(33, 192, 336)
    assert bs.assign(300, 120, 60) == Bucket(33, 96, 176)  # too small for the larger one
    again = BucketSet.from_config(bs.to_config())
    assert again.assign(640, 272, 60) == Bucket(33, 192, 336) and again.buckets[0].nominal == 16 / 9


def test_target_fps_counts_frames_at_that_rate():
    bs = BucketSet.from_config({"fps": 12.5, "buckets": [{"frames": 8, "height": 32, "width": 32}]})
    assert bs.available_frames(30, 25.0) == 15
    assert bs.assign(64, 64, 14, fps=25.0) is None  # only 7 frames at 12.5 fps
    idx = bs.frame_indices(Bucket(8, 32, 32), 30, 25.0)
    assert len(idx) == 8 and set(np.diff(idx)) == {2} and idx[0] >= 0 and idx[-1] < 30


def test_caption_choice_is_deterministic_follows_the_mix_and_falls_back():
    rows = [
        {"clip_id": f"c{i}", "caption_dense": "dense", "caption_short": "short", "original_caption": None}
        for i in range(2000)
    ]
    picks = [choose_caption(r, {"dense": 0.75, "short": 0.25, "original": 0.0})[0] for r in rows]
    assert abs(picks.count("dense") / len(picks) - 0.75) < 0.04
    assert picks == [choose_caption(r, {"dense": 0.75, "short": 0.25, "original": 0.0})[0] for r in rows]
    assert choose_caption({"clip_id": "x", "caption_dense": None, "caption_short": "  ", "original_caption": "orig"},
                          {"dense": 0.9, "short": 0.1, "original": 0.0}) == (None, None)  # fmt: skip
    row = {"clip_id": "x", "caption_dense": None, "original_caption": "orig"}
    assert choose_caption(row, {"dense": 0.9, "original": 0.1}) == ("original", "orig")


def test_sampler_batches_are_one_bucket_cover_every_clip_and_resume_exactly():
    groups = {"8x32x32": list(range(0, 10)), "1x32x32": list(range(10, 13))}
    s = BucketBatchSampler(groups, batch_size=4, seed=3)
    it = iter(s)
    epoch0 = [next(it) for _ in range(4)]  # ceil(10/4) + ceil(3/4) = 4 batches
    assert all(len(b) == 4 for b in epoch0)
    assert all(len({i >= 10 for i in b}) == 1 for b in epoch0)  # never mixes buckets
    assert set().union(*map(set, epoch0)) == set(range(13))
    later = [next(it) for _ in range(3)]
    state = s.state_dict()
    after = [next(it) for _ in range(6)]
    s2 = BucketBatchSampler(groups, batch_size=4, seed=3)
    s2.load_state_dict(state)
    assert [next(iter(s2)) for _ in range(1)] == after[:1]
    it2 = iter(s2)
    assert [next(it2) for _ in range(5)] == after[1:]
    assert later != epoch0[:3]  # a new epoch is reshuffled


def test_condition_masks_follow_probabilities():
    g = torch.Generator().manual_seed(0)
    m = condition_masks(4000, 6, 0.3, 0.2, g)
    first_only = (m[:, 0] == 1) & (m[:, 1] == 0)
    longer = m[:, 1] == 1
    assert abs(first_only.float().mean() - (0.3 + 0.2 / 3)) < 0.04  # k=1 also comes from extension draws
    assert abs((m.sum(1) > 0).float().mean() - 0.5) < 0.04 and m[:, 3:].sum() == 0 and longer.any()
    assert condition_masks(8, 1, 0.5, 0.5, g) is None  # images never get a conditioning frame


def test_clip_encoder_writes_bucketed_pixels_of_real_clips(tmp_path):
    rows = make_demo_clips(tmp_path, names=["bikes_s0", "carphone"])
    rows.append({**rows[0], "clip_id": "tiny", "width": 16, "height": 16})
    rows.append({**rows[0], "clip_id": "nocap", "caption_dense": None, "caption_short": None})
    rows.append({**rows[0], "clip_id": "missing", "clip_path": "clips/missing.mp4"})
    buckets = {"buckets": [{"frames": 8, "height": 32, "width": 64}, {"frames": 8, "height": 48, "width": 48}]}
    enc = ClipEncoder(tmp_path, codec="pixel", text_encoder="minilm", buckets=buckets, caption_mix={"dense": 1.0})
    cols = {k: np.array([r.get(k) for r in rows], dtype=object) for k in rows[0]}
    out = enc(cols)
    by_id = {cid: i for i, cid in enumerate(out["clip_id"])}
    assert out["error"][by_id["tiny"]] == "too_small"  # 16x16 under every bucket: the reason says which way
    assert out["error"][by_id["nocap"]] == "no_caption"
    assert out["error"][by_id["missing"]].startswith("error_prepare:")
    i, j = by_id["bikes_s0"], by_id["carphone"]
    assert out["bucket"][i] == "8x32x64" and out["bucket"][j] == "8x48x48"
    assert out["latent_shape"][i] == [3, 8, 32, 64] and out["caption_source"][i] == "dense"
    latent = np.frombuffer(out["latent"][i], dtype=out["latent_dtype"][i]).reshape(out["latent_shape"][i])
    src = read_clip_frames(tmp_path / rows[0]["clip_path"])
    idx = enc.buckets.frame_indices(Bucket(8, 32, 64), len(src), 25.0)
    want = resize_crop(src[idx], 32, 64).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(latent.transpose(1, 2, 3, 0), want, atol=2e-3)
    text = np.frombuffer(out["text"][i], dtype=out["text_dtype"][i]).reshape(out["text_shape"][i])
    assert text.shape[1] == 384 and text.shape[0] > 3


def test_shard_dataset_and_collate(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "training-demo"
    ds = ShardDataset(demo_dataset(root, names=["bikes_s0", "bikes_s1", "bikes_s2", "bikes_s3", "bikes_s4"]))
    assert ds.clip_ids == sorted(ds.clip_ids) and len(ds) == 5
    assert ds.manifest["counts"]["written"] == 5 and ds.manifest["codec"]["spec"] == "pixel"
    assert ds.manifest["text_encoder"]["spec"] == "minilm" and "torch" in ds.manifest["versions"]
    batch = collate([ds[i] for i in range(3)])
    assert batch["latents"].shape == (3, 3, 8, 32, 32) and batch["latents"].dtype == torch.float32
    lengths = batch["text_mask"].sum(1)
    assert batch["text"].shape[:2] == batch["text_mask"].shape and lengths.max() == batch["text"].shape[1]
    assert (batch["text"][~batch["text_mask"]] == 0).all()
    with pytest.raises(FileNotFoundError, match="clipforge prepare"):
        ShardDataset(tmp_path_factory.mktemp("empty"))


def test_shard_dataset_streams_row_groups_and_each_worker_reads_its_part(tmp_path):
    """Rows are read from the files per batch (a bounded cache of row groups), equal to what a full read gives, and
    a worker's Prefetcher reads only its slice of each global batch, padded like the whole batch."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from training.data import SHARD_SCHEMA, pack
    from training.train import Prefetcher

    rng = np.random.default_rng(0)
    (tmp_path / "shards").mkdir()
    for s in range(3):  # 3 files x 10 rows, row groups of 4: rows cross row-group and file boundaries
        recs = []
        for r in range(10):
            lat = pack(rng.standard_normal((3, 2, 8, 8), np.float32), "float16")
            txt = pack(rng.standard_normal((int(rng.integers(2, 9)), 16), np.float32), "float16")
            rec = dict(clip_id=f"c{r:02d}{s}", bucket="b1" if r % 2 else "b2", caption="x", caption_source="dense")
            rec.update(latent=lat[0], latent_shape=lat[1], latent_dtype=lat[2])
            rec.update(text=txt[0], text_shape=txt[1], text_dtype=txt[2], error="no_bucket" if r == 9 else None)
            recs.append(rec)
        pq.write_table(pa.Table.from_pylist(recs, schema=SHARD_SCHEMA), tmp_path / "shards" / f"p{s}.parquet",
                       row_group_size=4)  # fmt: skip
    full = pa.concat_tables([pq.read_table(f) for f in sorted((tmp_path / "shards").iterdir())])
    full = full.filter(pc.is_null(full["error"])).sort_by("clip_id").to_pylist()

    ds = ShardDataset(tmp_path, cache_row_groups=2)
    assert ds.clip_ids == [r["clip_id"] for r in full] and len(ds) == 27
    order = list(rng.permutation(len(ds)))
    for i, sample in zip(order, ds.samples(order), strict=True):
        want = np.frombuffer(full[i]["latent"], np.float16).reshape(full[i]["latent_shape"])
        np.testing.assert_array_equal(sample.latent, want)
        assert sample.text.shape[0] == full[i]["text_shape"][0]
        assert len(ds._cache) <= 2  # never more than the bounded row-group cache

    reads: list[list[int]] = []
    ds.samples = lambda idx, _orig=ds.samples: reads.append(list(idx)) or _orig(idx)
    batches = list(BucketBatchSampler(ds.by_bucket(), 4, seed=3).plan(0))[:3]
    parts = []
    for rank in range(2):
        sampler = BucketBatchSampler(ds.by_bucket(), 4, seed=3)
        loader = Prefetcher(ds, sampler, depth=1, part=slice(2 * rank, 2 * rank + 2))
        parts.append([loader.next()[0] for _ in range(3)])
        loader.close()
    for k, idx in enumerate(batches):
        whole = collate(ds.samples(idx))
        for rank in range(2):
            mine = parts[rank][k]
            assert mine["global_size"] == 4 and mine["latents"].shape[0] == 2
            torch.testing.assert_close(mine["latents"], whole["latents"][2 * rank : 2 * rank + 2], rtol=0, atol=0)
            torch.testing.assert_close(mine["text"], whole["text"][2 * rank : 2 * rank + 2], rtol=0, atol=0)
    assert all(len(r) <= 2 for r in reads[:6])  # each worker's reads: its 2 clips of a batch, never all 4
