"""Dedup: exact and near duplicates across the whole table, the keep-best rule, and row-order independence.

Signatures here are synthetic 8 x 64-bit hashes with KNOWN bit distances (the real-footage case, a resized
re-encode of a bigbuckbunny clip, is in test_filters.py)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from stages.dedup import DedupConfig, duplicate_pairs, find_duplicates, quality_key


def flip(sig: list[int], bits_per_frame: int, rng: random.Random) -> list[int]:
    out = []
    for h in sig:
        u = h & ((1 << 64) - 1)
        for b in rng.sample(range(64), bits_per_frame):
            u ^= 1 << b
        out.append(u - (1 << 64) if u >= 1 << 63 else u)
    return out


def _mean_bits(p: list[int], q: list[int]) -> float:
    return sum(bin((x ^ y) & ((1 << 64) - 1)).count("1") for x, y in zip(p, q, strict=True)) / len(p)


def rand_sig(rng: random.Random) -> list[int]:
    return [rng.getrandbits(64) - (1 << 63) for _ in range(8)]


def table(rows: list[dict]) -> pa.Table:
    schema = pa.schema(
        [
            ("clip_id", pa.string()),
            ("phash", pa.list_(pa.int64())),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("duration_s", pa.float64()),
            ("aesthetic", pa.float32()),
            ("sharpness", pa.float32()),
            ("clip_embedding", pa.list_(pa.float32())),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def clip(cid, sig, w=640, h=360, dur=4.0, aes=None, sharp=100.0, emb=None):
    return {
        "clip_id": cid,
        "phash": sig,
        "width": w,
        "height": h,
        "duration_s": dur,
        "aesthetic": aes,
        "sharpness": sharp,
        "clip_embedding": emb,
    }


@pytest.fixture
def corpus():
    rng = random.Random(0)
    a, b, c = rand_sig(rng), rand_sig(rng), rand_sig(rng)
    rows = [
        clip("a_720p", a, 1280, 720),
        clip("a_exact_copy", list(a), 1280, 720, dur=3.0),  # same content, shorter -> dropped
        clip("a_small_reencode", flip(a, 3, rng), 640, 360),  # near copy at lower resolution
        clip("b", b),
        clip("b_near", flip(b, 6, rng), sharp=50.0),  # same size and length, blurrier -> dropped
        clip("c", c),
        clip("c_unrelated", flip(c, 30, rng)),  # ~half the bits differ: a different clip
        clip("error_row", None),  # no signature (scoring failed): never a duplicate of anything
    ]
    rows += [clip(f"other_{i}", rand_sig(rng)) for i in range(200)]
    return rows


def test_exact_and_near_duplicates_map_to_the_best_copy(corpus):
    got = find_duplicates(table(corpus), DedupConfig())
    assert got == {"a_exact_copy": "a_720p", "a_small_reencode": "a_720p", "b_near": "b"}


def test_result_does_not_depend_on_row_order(corpus):
    expected = find_duplicates(table(corpus))
    for seed in range(3):
        rows = corpus[:]
        random.Random(seed).shuffle(rows)
        assert find_duplicates(table(rows)) == expected


def test_keep_rule_resolution_then_duration_then_aesthetic_then_sharpness_then_id():
    rng = random.Random(1)
    s = rand_sig(rng)
    rows = [
        clip("z_best_aesthetic", s, aes=6.0, sharp=10.0),
        clip("y_sharper", s, aes=5.0, sharp=500.0),
        clip("x_longer", s, dur=4.5, aes=1.0, sharp=1.0),
    ]
    assert set(find_duplicates(table(rows)).values()) == {"x_longer"}
    rows[2]["duration_s"] = 4.0
    assert set(find_duplicates(table(rows)).values()) == {"z_best_aesthetic"}
    for r in rows:
        r["aesthetic"] = None
    assert set(find_duplicates(table(rows)).values()) == {"y_sharper"}
    rows[1]["sharpness"] = 10.0
    rows[2]["sharpness"] = 10.0
    assert set(find_duplicates(table(rows)).values()) == {"x_longer"}  # full tie: lowest clip_id
    rows.append(clip("w_1080p", flip(s, 2, rng), 1920, 1080, dur=1.0, sharp=1.0))
    assert set(find_duplicates(table(rows)).values()) == {"w_1080p"}  # resolution first
    assert quality_key({"clip_id": "q"}) > quality_key({"clip_id": "r", "width": 2, "height": 2})  # nulls last


def test_near_threshold_is_mean_bits_per_frame():
    rng = random.Random(2)
    s = rand_sig(rng)
    rows = [clip("a_orig", s), clip("b_d10", flip(s, 10, rng)), clip("c_d16", flip(s, 16, rng))]
    # 8-bit bands (8 per frame x 8 frames) make a shared band near-certain at these distances (fixed seed), so this
    # checks the verification threshold: 10 bits/frame <= 12 is a copy, 16 is not
    got = find_duplicates(table(rows), DedupConfig(band_bits=8))
    assert got == {"b_d10": "a_orig"}
    assert find_duplicates(table(rows), DedupConfig(band_bits=8, max_hamming=16)) == {
        "b_d10": "a_orig",
        "c_d16": "a_orig",
    }


def test_clip_embeddings_can_veto_a_hash_match():
    rng = random.Random(3)
    s = rand_sig(rng)
    e1 = np.eye(4, dtype=np.float32)
    rows = [clip("p", s, emb=list(e1[0])), clip("q", flip(s, 2, rng), emb=list(e1[1])), clip("r", list(s), emb=None)]
    assert find_duplicates(table(rows)) == {"q": "p", "r": "p"}
    assert find_duplicates(table(rows), DedupConfig(min_cosine=0.9)) == {"r": "p"}  # r is an exact copy


def test_a_chain_drops_only_what_matches_a_kept_clip_and_uninformative_buckets_are_skipped():
    """a~b and b~c while a and c are further apart (two halves of a near-still shot, each matched by a re-timed copy
    of the whole): the clips are taken best first and each is a duplicate of a kept clip it matches itself. a ranked
    first keeps c (it matches no kept clip); b ranked first drops both ends as its duplicates. Exact copies of the
    chain's members (duplicate_pairs' representatives) follow their representative."""
    rng = random.Random(4)
    a = rand_sig(rng)
    b = flip(a, 8, rng)
    c = flip(b, 8, rng)
    cfg = DedupConfig(band_bits=8, max_hamming=10)
    assert _mean_bits(a, c) > 10  # the ends are no near pair themselves
    rows = [clip("a", a, 1920, 1080), clip("b", b), clip("c", c)]
    assert find_duplicates(table(rows), cfg) == {"b": "a"}  # single-link grouping also dropped c for a
    rows = [clip("a", a), clip("b", b, 1920, 1080), clip("c", c), clip("c2", list(c))]
    assert find_duplicates(table(rows), cfg) == {"a": "b", "c": "b", "c2": "b"}
    flat = [0] * 8  # e.g. flat frames: every band value identical
    crowd = [clip(f"flat_{i}", flip(flat, 20, rng)) for i in range(30)]
    exact, near = duplicate_pairs(table(crowd), DedupConfig(max_bucket=5))
    assert exact == [] and all(len({x, y}) == 2 for x, y in near)


def test_empty_and_all_null_tables():
    assert find_duplicates(table([])) == {}
    assert find_duplicates(table([clip("x", None), clip("y", None)])) == {}
    with pytest.raises(ValueError, match="band_bits"):
        find_duplicates(table([clip("x", [1] * 8)]), DedupConfig(band_bits=12))


def test_the_clean_copy_is_kept_over_its_grained_or_recompressed_copies(bikes, tmp_path):
    """Copies of one real shot (bikes.mp4's second) at the same size and length: clean at CRF 18, under film grain
    (sigma 7 grey levels) and at CRF 35, scored by the real scorer. They are one duplicate group and dedup keeps the
    clean copy: more detail above the noise (stages.dedup.clean_detail). The Laplacian sharpness, the tie-break
    before schema 10, rises with grain and would keep the grained copy."""
    from pipeline.defects import grain
    from pipeline.footage import BIKES_CUTS
    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig

    shot = decode_frames(bikes, BIKES_CUTS[0], BIKES_CUTS[1])
    scorer = CpuScorer(CpuScoresConfig())
    copies = {"clean": (shot, 18), "grain": (grain(shot, seed=3), 18), "crf35": (shot, 35)}
    rows = []
    for name, (frames, crf) in copies.items():
        s = scorer.score_clip(write_frames(frames, tmp_path / f"{name}.mp4", fps=25, crf=crf))
        rows.append({"clip_id": name, "width": 640, "height": 272, "duration_s": 2.0} | s)
    cols = ("clip_id", "phash", "width", "height", "duration_s", "detail", "noise_floor", "sharpness")
    scored = pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows])
    assert find_duplicates(scored) == {"grain": "clean", "crf35": "clean"}
    grained = max(rows, key=lambda r: r["sharpness"])
    assert grained["clip_id"] == "grain"  # what sharpness alone would have kept


def test_the_copy_without_a_logo_is_kept_where_the_text_rules_are_off(bikes, tmp_path):
    """bikes.mp4's third shot (frames 76-137), and the same shot under a channel logo (alpha 0.5) and under a subtitle
    line, scored by the real scorer. With the text rules off (a user who keeps logo clips) all three reach dedup as
    one group, and dedup keeps the copy with nothing laid over it (overlay_area + subtitle_area). Without those
    columns the copies' detail is a toss-up (the subtitle copy's reads a little higher here, the logo copy's the same)
    and the Laplacian sharpness, the last tie-break, reads the graphics' edges: a copy with a graphic is kept."""
    from pipeline.defects import logo, subtitle
    from pipeline.footage import BIKES_CUTS
    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig

    shot = decode_frames(bikes, BIKES_CUTS[1], BIKES_CUTS[2])
    scorer = CpuScorer(CpuScoresConfig())
    copies = {"logo": logo(shot, 0.5, "tr"), "clean": shot, "subtitle": subtitle(shot)}
    rows = []
    for name, frames in copies.items():
        s = scorer.score_clip(write_frames(frames, tmp_path / f"{name}.mp4", fps=25))
        rows.append({"clip_id": name, "width": 640, "height": 272, "duration_s": 2.0} | s)
    assert rows[0]["overlay_area"] > 0.005 and rows[2]["overlay_area"] + rows[2]["subtitle_area"] > 0.005, rows
    cols = ("clip_id", "phash", "width", "height", "duration_s", "detail", "noise_floor", "sharpness")
    scored = pa.Table.from_pylist([{c: r[c] for c in (*cols, "overlay_area", "subtitle_area")} for r in rows])
    assert find_duplicates(scored) == {"logo": "clean", "subtitle": "clean"}
    blind = pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows])  # without the graphics' columns
    assert "clean" in find_duplicates(blind), find_duplicates(blind)  # a copy with a graphic was kept


def test_a_copy_cut_at_another_start_is_found_by_shifting_its_anchors(bikes, tmp_path):
    """Windows of bikes.mp4's taxi shot (fast action, frames 78-135) cut 5 and 10 frames later than the first, and a
    window of another shot: compared anchor by anchor the offset copies are 19-20 bits apart (the anchors fall on
    other moments of a fast scene), shifted by one and two anchors 0.3 bits; the other shot is no copy."""
    from pipeline.footage import BIKES_CUTS
    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig

    frames = decode_frames(bikes)
    scorer = CpuScorer(CpuScoresConfig())
    windows = {"taxi": (78, 118), "taxi_5": (83, 123), "taxi_10": (88, 128), "railing": (BIKES_CUTS[2] + 2, 179)}
    rows = []
    for name, (a, b) in windows.items():
        s = scorer.score_clip(write_frames(frames[a:b], tmp_path / f"{name}.mp4", fps=25))
        rows.append({"clip_id": name, "phash": s["phash"], "phash_mirror": s["phash_mirror"], "duration_s": 1.6})
    scored = pa.Table.from_pylist(rows)
    assert find_duplicates(scored, DedupConfig(max_shift=0)) == {}
    assert find_duplicates(scored) == {"taxi_5": "taxi", "taxi_10": "taxi"}


def test_adjacent_windows_of_a_near_still_shot_are_not_offset_copies(bigbuckbunny, tmp_path):
    """bigbuckbunny.mp4's two halves (one near-still shot, frames 0-66 and 66-132) share no frame: 13.8 bits apart
    anchor by anchor, 8.4 shifted by three anchors, where the scene looks the same 1.7 s later. A shifted comparison
    must be closer than that (``max_shift_hamming``, 6): with the unshifted threshold of 12 they would be copies."""
    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig

    frames = decode_frames(bigbuckbunny)
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for name, (a, b) in {"first_half": (0, 66), "second_half": (66, 132)}.items():
        s = scorer.score_clip(write_frames(frames[a:b], tmp_path / f"{name}.mp4", fps=25))
        rows.append({"clip_id": name, "phash": s["phash"], "phash_mirror": s["phash_mirror"], "duration_s": 2.64})
    scored = pa.Table.from_pylist(rows)
    assert find_duplicates(scored) == {}
    assert find_duplicates(scored, DedupConfig(max_shift_hamming=12.0)) == {"second_half": "first_half"}


def test_two_halves_of_a_shot_joined_by_a_retimed_copy_lose_only_to_a_clip_they_match(bigbuckbunny, tmp_path):
    """bigbuckbunny's near-still opening at 640x360: its two halves (frames 0-65 and 66-131) are no copies of each
    other, but a 2x-speed copy of the whole matches each (real scorer, real dedup). A half ranked first drops the
    copy and keeps the other half (one group under single-link grouping dropped both for one), and the copy is named
    the duplicate of the half it matches most nearly, whichever ranks first; the copy ranked first (more pixels here)
    drops both halves, each a clip it matches."""
    import cv2

    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig

    shot = decode_frames(bigbuckbunny, 0, 132)
    shot = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in shot])
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for name, frames in {"half1": shot[:66], "half2": shot[66:], "fast": shot[::2]}.items():
        s = scorer.score_clip(write_frames(frames, tmp_path / f"{name}.mp4", fps=25))
        keep = ("phash", "phash_mirror", "detail", "noise_floor", "sharpness")
        rows.append({"clip_id": name, "width": 640, "height": 360, "duration_s": 2.64} | {c: s[c] for c in keep})
    exact, near = duplicate_pairs(pa.Table.from_pylist(rows))
    assert exact == [] and sorted(near) == [(0, 2), (1, 2)]  # each half ~ the fast copy, the halves apart
    # the copy is named the duplicate of the kept half it matches most nearly, whichever half ranks first
    bits = {(x, y): d for x, y, _, d in duplicate_pairs(pa.Table.from_pylist(rows), details=True)[1]}
    nearer = "half1" if bits[(0, 2)] < bits[(1, 2)] else "half2"
    assert abs(bits[(0, 2)] - bits[(1, 2)]) > 0.1, bits
    for first in ("half1", "half2"):
        halves_first = [r | {"width": 700} if r["clip_id"] == first else r for r in rows]
        assert find_duplicates(pa.Table.from_pylist(halves_first)) == {"fast": nearer}, (first, bits)
    fast_first = [r | {"width": 700} if r["clip_id"] == "fast" else r for r in rows]
    assert find_duplicates(pa.Table.from_pylist(fast_first)) == {"half1": "fast", "half2": "fast"}


def test_of_a_clip_and_its_mirror_image_the_first_source_path_is_kept_and_grain_still_loses(bikes, tmp_path):
    """A real shot (bikes.mp4's fourth, 640x272) and its mirror image hold the same picture, but their detail and
    noise floor differ by where the 32 px tiles fall (several %): the copy kept was whichever read higher. Now a pair
    that matches only mirrored and is alike in pixels, bars, duration and graphics is decided by the source path that
    sorts first (keep the first), either way round; a grained copy of the same shot still loses on its detail even
    when its path sorts first."""
    from pipeline.defects import grain
    from pipeline.footage import BIKES_CUTS
    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig
    from stages.dedup import clean_detail

    shot = decode_frames(bikes, BIKES_CUTS[2], BIKES_CUTS[3])
    scorer = CpuScorer(CpuScoresConfig())
    scores = {}
    made = {"shot": (shot, 18), "mirror": (shot[:, :, ::-1], 18), "grain": (grain(shot, seed=5), 18)}
    made["crf"] = (shot, 38)
    for name, (frames, crf) in made.items():
        scores[name] = scorer.score_clip(write_frames(frames, tmp_path / f"{name}.mp4", fps=25, crf=crf))
    got = {k: clean_detail(v["detail"], v["noise_floor"]) for k, v in scores.items()}
    assert abs(got["mirror"] / got["shot"] - 1) > 0.005  # the tiles see the two otherwise
    cols = ("phash", "phash_mirror", "detail", "noise_floor", "sharpness")

    def rows(paths: dict[str, str]) -> pa.Table:
        return pa.Table.from_pylist(
            [
                {"clip_id": f"id_{k}", "width": 640, "height": 272, "duration_s": 2.0, "start_s": 0.0}
                | {"source_path": paths[k]}
                | {c: scores[k][c] for c in cols}
                for k in paths
            ]
        )

    (pair,) = duplicate_pairs(rows({"shot": "a.mp4", "mirror": "b.mp4"}), details=True)[1]
    assert pair[:3] == (0, 1, True) and pair[3] <= 2.0, pair  # a mirror image matches only mirrored, within 2 bits
    assert find_duplicates(rows({"shot": "a.mp4", "mirror": "b.mp4"})) == {"id_mirror": "id_shot"}
    assert find_duplicates(rows({"shot": "b.mp4", "mirror": "a.mp4"})) == {"id_shot": "id_mirror"}
    assert find_duplicates(rows({"shot": "b.mp4", "grain": "a.mp4"})) == {"id_grain": "id_shot"}
    # a worse re-encode of the shot matches the mirror only mirrored too; it stays on the shot's side and ranks by its
    # own detail there, though its path sorts first (a newcomer's: the re-encode was kept over both)
    assert got["crf"] < got["shot"]
    expected = {"id_crf": "id_shot", "id_mirror": "id_shot"}
    assert find_duplicates(rows({"crf": "a.mp4", "shot": "b.mp4", "mirror": "c.mp4"})) == expected


def test_a_night_or_high_key_grade_is_another_look_and_both_are_kept(bikes, tmp_path):
    """A real shot (bikes.mp4's second) and its night and high-key grades keep their pHash (a tone curve keeps the
    DCT's signs): each grade is a near pair of the shot. Their mean luma is 0.2-0.3 apart, so they are two looks of
    one footage and all three are kept; the shot's mirror image (the same look) is still dropped. With
    max_luma_shift None every grade is a copy again."""
    from pipeline.defects import high_key, night
    from pipeline.footage import BIKES_CUTS
    from pipeline.testdata import decode_frames, write_frames
    from stages.cpu_scores import CpuScorer, CpuScoresConfig

    shot = decode_frames(bikes, BIKES_CUTS[0], BIKES_CUTS[1])
    scorer = CpuScorer(CpuScoresConfig())
    made = {"shot": shot, "night": night(shot), "high_key": high_key(shot), "zmirror": shot[:, :, ::-1]}
    rows = []
    for name, frames in made.items():
        s = scorer.score_clip(write_frames(frames, tmp_path / f"{name}.mp4", fps=25))
        keep = ("phash", "phash_mirror", "detail", "noise_floor", "sharpness", "luma_mean")
        rows.append({"clip_id": name, "source_path": f"{name}.mp4", "width": 640, "height": 272, "duration_s": 1.84}
                    | {c: s[c] for c in keep})  # fmt: skip
    table = pa.Table.from_pylist(rows)
    _, near = duplicate_pairs(table)
    assert {(0, 1), (0, 2), (0, 3)} <= set(near)  # each grade and the mirror match the shot's signature
    shifts = [abs(r["luma_mean"] - rows[0]["luma_mean"]) for r in rows[1:]]
    assert min(shifts[:2]) > 2 * DedupConfig().max_luma_shift > 10 * shifts[2]
    assert find_duplicates(table) == {"zmirror": "shot"}
    every = find_duplicates(table, DedupConfig(max_luma_shift=None))
    # every grade a copy again: the night grade reads the most detail above its noise and is kept over the shot itself
    assert every == {"shot": "night", "high_key": "night", "zmirror": "night"}
