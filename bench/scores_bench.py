"""Benchmark of the scores stage and the dedup index; writes bench/results/scores.json.

1. CPU scorer on real clips (bikes.mp4 shots, bigbuckbunny, carphone, transnet_test windows, written as H.264
   clips like stages/clips.py does): clips/s, frames decoded per clip, read_frames calls per clip (must be 1: every
   CPU score comes from one decode), and the split of the time between decoding and scoring. Baseline measured in
   the same run: the same scores computed the naive way, each scorer (motion, quality, text, hash) decoding its own
   frames, so the ratio shows what decode-once saves on this machine.
2. Dedup: DuckDB LSH index over N synthetic 8 x 64-bit signatures with planted near copies (known bit distances):
   time, candidate pairs, recall per distance; baseline in the same run: exact brute force (numpy popcount in
   blocks) on the first 10k signatures, compared as a ratio against the index on the same 10k.
3. The corners' closer look of 2026-12-05 (the Cr and Cb views, and the look where the motion test judged the
   corners: ``overlay_corner_always``): the clips of 1 scored as before (the baseline) and as now, interleaved three
   times in the same run, and how many anchors each look read.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/scores_bench.py [--dedup-n 100000] [--dedup-max-shift 3]
       [--out bench/results/scores.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa

from pipeline.footage import BIKES_CUTS, sample_video
from stages import frames as frames_mod
from stages.cpu_scores import CpuScorer, CpuScoresConfig, phash64, resize_short, sample_plan, score_frames, to_luma
from stages.dedup import DedupConfig, duplicate_pairs, find_duplicates


def _decode(path: Path, start: int = 0, end: int | None = None) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack(
            [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if start <= i < (end or 1 << 30)]
        )


def _write(frames: np.ndarray, path: Path, fps: float) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "20", "preset": "veryfast"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode())


def make_clips(out: Path) -> list[dict]:
    """Real footage cut into clips of 2-10 s (what the clips stage produces)."""
    specs = []
    b = _decode(sample_video("bikes"))
    cuts = (0, *BIKES_CUTS, 250)
    for s, e in zip(cuts[:-1], cuts[1:], strict=True):
        if e - s >= 50:
            specs.append((f"bikes_{s}", b[s:e], 25.0))
    specs.append(("bigbuckbunny", _decode(sample_video("bigbuckbunny")), 25.0))
    specs.append(("carphone", _decode(sample_video("carphone")), 30000 / 1001))
    tn = _decode(sample_video("transnet_test"), 0, 1500)
    for k in range(0, 1500, 250):
        specs.append((f"transnet_{k}", tn[k : k + 125], 25.0))
    rows = []
    for name, frames, fps in specs:
        p = out / f"{name}.mp4"
        _write(frames, p, fps)
        rows.append(
            {
                "clip_id": name,
                "clip_path": p.name,
                "num_frames": len(frames),
                "fps": fps,
                "width": frames.shape[2],
                "height": frames.shape[1],
            }
        )
    return rows


def bench_cpu(root: Path, rows: list[dict]) -> dict:
    cfg = CpuScoresConfig(root=str(root))
    scorer = CpuScorer(cfg)
    calls: list[int] = []
    real = frames_mod.read_frames

    def counting(path, indices, **kw):
        calls.append(len(indices))
        return real(path, indices, **kw)

    frames_mod.read_frames = counting
    try:
        batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
        scorer(batch)  # warm-up: onnxruntime and OpenCV allocate on first use
        calls.clear()
        t0 = time.perf_counter()
        table = scorer(batch)
        total = time.perf_counter() - t0
    finally:
        frames_mod.read_frames = real
    assert table["error_scores"].null_count == len(rows), table["error_scores"].to_pylist()
    frames_decoded = table["frames_decoded"].to_pylist()

    # decode-only time of the same frames (what one decode costs), and the naive per-scorer-decode baseline
    t0 = time.perf_counter()
    for r in rows:
        a, p = sample_plan(r["num_frames"], r["fps"], cfg.num_samples, cfg.pair_gap_s)
        real(root / r["clip_path"], sorted(set(a) | set(p)), size=cfg.size)
    decode_only = time.perf_counter() - t0

    t0 = time.perf_counter()
    for r in rows:
        path = root / r["clip_path"]
        a, p = sample_plan(r["num_frames"], r["fps"], cfg.num_samples, cfg.pair_gap_s)
        gap = (p[0] - a[0]) / r["fps"]
        # motion: its own decode of anchors + partners
        fa, fp = real(path, a, size=cfg.size), real(path, p, size=cfg.size)
        score_frames(fa, fp, gap, CpuScoresConfig(text_frames=0), None)
        # quality: own decode
        score_frames(real(path, a, size=cfg.size), None, gap, cfg, None)
        # text: own decode
        score_frames(real(path, a, size=cfg.size), None, gap, cfg, scorer.detector)
        # hash: own decode
        [phash64(f) for f in to_luma(resize_short(real(path, a, size=cfg.size), cfg.size))]
    naive = time.perf_counter() - t0
    return {
        "clips": len(rows),
        "clip_sources": sorted({r["clip_id"].rsplit("_", 1)[0] for r in rows}),
        "seconds": round(total, 3),
        "clips_per_s": round(len(rows) / total, 3),
        "ms_per_clip": round(1000 * total / len(rows), 1),
        "frames_decoded_per_clip": sorted(set(frames_decoded)),
        "read_frames_calls_per_clip": len(calls) / len(rows),
        "decode_only_seconds": round(decode_only, 3),
        "decode_share": round(decode_only / total, 3),
        "baseline_naive_per_scorer_decode_seconds": round(naive, 3),
        "speedup_vs_naive": round(naive / total, 3),
        "config": {"num_samples": cfg.num_samples, "size": cfg.size, "flow": cfg.flow, "text_frames": cfg.text_frames},
    }


def bench_corner_look(root: Path, rows: list[dict], rounds: int = 3) -> dict:
    """What the corners' closer look of 2026-12-05 costs: the clips of :func:`bench_cpu` scored as before (the
    baseline, ``overlay_corner_colour`` false: the lightness and whiteness views, only where the motion test could not
    judge the corners) and as now
    (the Cr and Cb views too, and the look in Cr and Cb where the motion test judged the corners and found nothing,
    ``overlay_corner_always``), interleaved ``rounds`` times in this run, the median of each; how many anchors per
    clip each look read, and the overlays found each way."""
    from stages import cpu_scores

    before = CpuScorer(CpuScoresConfig(root=str(root), overlay_corner_colour=False))
    now = CpuScorer(CpuScoresConfig(root=str(root)))
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    real = cpu_scores.corner_text_boxes
    looked = {"before": [0, 0], "now": [0, 0]}  # anchors read (not judged, judged)

    def run(name: str) -> tuple[float, pa.Table]:
        def counting(*args, **kwargs):
            judged = kwargs.get("side") is not None  # the judged look passes its side
            if judged or "lightness" in kwargs.get("views", ()):  # one call per anchor read
                looked[name][judged] += 1
            return real(*args, **kwargs)

        cpu_scores.corner_text_boxes = counting
        try:
            t0 = time.perf_counter()
            table = (before if name == "before" else now)(batch)
            return time.perf_counter() - t0, table
        finally:
            cpu_scores.corner_text_boxes = real

    run("before"), run("now")  # warm-up
    seconds: dict[str, list[float]] = {"before": [], "now": []}
    tables = {}
    for name in looked:
        looked[name] = [0, 0]
    for _ in range(rounds):
        for name in seconds:
            t, tables[name] = run(name)
            seconds[name].append(t)
    b, n = (float(np.median(seconds[k])) for k in ("before", "now"))
    found = {k: sum(a is not None and a > 0 for a in t["overlay_area"].to_pylist()) for k, t in tables.items()}
    return {
        "clips": len(rows),
        "rounds": rounds,
        "ms_per_clip_before": round(1000 * b / len(rows), 1),
        "ms_per_clip_now": round(1000 * n / len(rows), 1),
        "now_over_before": round(n / b, 3),
        "anchors_read_per_clip_unjudged_judged": {
            k: [round(v / (rounds * len(rows)), 3) for v in c] for k, c in looked.items()
        },
        "overlays_found": found,
    }


def _signatures(n: int, rng: np.random.Generator, planted: int, dists: tuple[int, ...]) -> tuple[pa.Table, list]:
    sig = rng.integers(-(2**63), 2**63 - 1, size=(n, 8), dtype=np.int64)
    truth = []
    for i in range(planted):
        d = dists[i % len(dists)]
        src = planted + i
        u = sig[src].view(np.uint64).copy()
        for k in range(8):
            mask = 0
            for b in rng.choice(64, d, replace=False):
                mask |= 1 << int(b)
            u[k] ^= np.uint64(mask)
        sig[i] = u.view(np.int64)
        truth.append((i, src, d))
    w = np.where(np.arange(n) < planted, 320, 640).astype(np.int32)  # copies are smaller: originals are kept
    table = pa.table(
        {
            "clip_id": [f"c{i:07d}" for i in range(n)],
            "phash": pa.array(list(sig), pa.list_(pa.int64())),
            "width": w,
            "height": np.full(n, 272, np.int32),
        }
    )
    return table, truth


def _brute_force_pairs(sig: np.ndarray, max_hamming: float, block: int = 256) -> set[tuple[int, int]]:
    n = len(sig)
    u = sig.view(np.uint64)
    out = set()
    for s in range(0, n, block):
        d = np.bitwise_count(u[s : s + block, None, :] ^ u[None, :, :]).mean(-1)  # (block, n)
        for i, j in zip(*np.nonzero(d <= max_hamming), strict=True):
            if s + i < j:
                out.add((int(s + i), int(j)))
    return out


def bench_dedup(n: int, max_shift: int | None = None) -> dict:
    rng = np.random.default_rng(0)
    dists = (0, 2, 4, 6, 8, 10, 12)
    table, truth = _signatures(n, rng, planted=min(7000, n // 10), dists=dists)
    cfg = DedupConfig() if max_shift is None else DedupConfig(max_shift=max_shift)
    t0 = time.perf_counter()
    got = find_duplicates(table, cfg)
    t_index = time.perf_counter() - t0
    ids = table["clip_id"].to_pylist()
    recall = {}
    for d in dists:
        hits = [got.get(ids[i]) == ids[s] for i, s, dd in truth if dd == d]
        recall[str(d)] = round(sum(hits) / len(hits), 3)
    false_pos = sum(1 for k, v in got.items() if int(k[1:]) >= len(truth) or int(v[1:]) < len(truth))

    # same-run baseline on the first 10k rows: exact brute force vs the index
    m = min(10_000, n)
    sub = table.slice(0, m)
    sig = np.stack(sub["phash"].to_numpy(zero_copy_only=False)).astype(np.int64)
    t0 = time.perf_counter()
    brute = _brute_force_pairs(sig, cfg.max_hamming)
    t_brute = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact, near = duplicate_pairs(sub, cfg)
    t_sub = time.perf_counter() - t0
    found = {tuple(sorted(p)) for p in near} | {(g[0], j) for g in exact for j in g[1:]}
    return {
        "signatures": n,
        "anchors_per_signature": 8,
        "planted_near_copies": len(truth),
        "index": "DuckDB self-join on (anchor +-max_shift, 16-bit band, value), verified by mean Hamming <= 12 "
        f"at the best of the anchor shifts (max_shift {cfg.max_shift})",
        "seconds": round(t_index, 3),
        "signatures_per_s": round(n / t_index),
        "recall_by_bits_flipped_per_anchor": recall,
        "false_positives": false_pos,
        "baseline_subset": m,
        "baseline_brute_force_seconds": round(t_brute, 3),
        "index_seconds_on_subset": round(t_sub, 3),
        "speedup_vs_brute_force_on_subset": round(t_brute / t_sub, 2),
        "subset_pairs_found_by_index_over_brute_force": f"{len(found & brute)}/{len(brute)}",
    }


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dedup-n", type=int, default=100_000)
    ap.add_argument("--dedup-max-shift", type=int, help="dedup.max_shift (default: DedupConfig's; 0: unshifted)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scores.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = make_clips(root)
        cpu = bench_cpu(root, rows)
        corner = bench_corner_look(root, rows)
    print(json.dumps(cpu, indent=2))
    print(json.dumps(corner, indent=2))
    dedup = bench_dedup(args.dedup_n, args.dedup_max_shift)
    print(json.dumps(dedup, indent=2))
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "shared, noisy machine"},
        "cpu_scorer": cpu,
        "corner_look": corner,
        "dedup": dedup,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
