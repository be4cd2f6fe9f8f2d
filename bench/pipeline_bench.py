"""Whole-run benchmark: synthetic corpora of N, 4N and 16N short-shot videos through `clipforge run`, the streaming
graph against the phase-by-phase run it replaced (the same corpora, the same process layout, in the same run).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline_bench.py [--n 2] [--baseline 9cfbb07] [--size 160x96]
        [--baseline-name phased] [--out ...json]

Per corpus size and per code version (``streaming``: this tree; ``phased``: ``--baseline REV`` checked out with
``git worktree`` into a temporary directory, run from there; ``--baseline ''`` skips it) it writes:
- ``wall_s`` of one fresh driver process running the whole pipeline (``pipeline.run.run``, CLIP and captions off:
  no weights here), ``clips_per_s`` (cut clips / wall);
- ``driver_peak_rss_mb``: the driver process's own peak RSS (``VmHWM`` in /proc/self/status; Ray's workers excluded;
  not ``getrusage``, whose ``ru_maxrss`` in a child starts at the parent's RSS at the fork: results before 2026-12-02
  carry this bench's own memory, ~410-600 MB);
- ``phases``: the run's phases as [start, end] seconds from its start (runs/<id>.json);
- ``machine_busy``: the share of the machine's CPU time (all cores, /proc/stat) busy while the run went: how far the
  run was CPU-bound (whatever else ran on the machine counts too);
- ``busy`` (streaming only): each graph stage's busy intervals as recorded by its tasks and actors
  (runs/<id>.busy/*.jsonl): first start, last end (seconds from the graph's first busy moment), busy seconds
  summed over workers, and ``overlap_s``: how long at least two different stages were busy at once;
- ``profile``: where the work went, summed over rows from the tables themselves: probe_s, detect_s, cut_s,
  scores_s (CPU-seconds of the stage calls);
- ``scorer_profile`` (streaming only): cProfile of the CPU scorer as a run spends it (``CpuScorer.score_encoded``
  on the frames a clip's encoder received, one thread, in this process) over up to 12 of the run's clips: seconds
  per clip in total and in its parts (the PP-OCR text detector, every DIS flow, the overlay score, the rest), and
  ``decode_s_per_clip``: what reading the clip file would add (``scores.at_cut`` false, resumed clips);
- ``cpu_budget`` (the 4N corpus): each stage's CPU seconds (probe, hybrid shots, cut, CPU scores from the clip files,
  ``cut_with_scores_at_cut``: the cut scoring each clip from its encoder's input, and ``one_pass_with_scores_at_cut``:
  that cut detecting the shots from its own decode, ``stages.onepass``: the run's default) over the whole
  corpus, run one after the other in one process with one thread each (``time.process_time``), against the floor's
  CPU seconds measured the same way, and ``two_core_bound_over_floor``: the stages' CPU seconds spread over 2 cores,
  over the floor's wall seconds, the lowest wall_over_floor any schedule of this work reaches on this machine;
- ``floor_s``: the decode+encode floor measured in the same run, the same way the cutter works: decode every source
  frame once (PyAV) and encode every frame of every cut clip once (libx264 at the run's CRF/preset, one encoder per
  clip, frames at their source timestamps, x264 choosing the frame types), in this process; ``wall_over_floor`` =
  wall_s / floor_s.

The ratios ``rss_16n_over_n``, ``streaming_over_phased`` (wall) and the per-size ``wall_over_floor`` are what
docs/PERFORMANCE.md quotes; absolute seconds vary with the machine's load, ratios measured in one run much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.testdata import frame_pattern, write_frames  # noqa: E402

PATTERNS = ("gradient", "shapes", "noise", "solid")
SHOT_FRAMES = 60  # 2.5 s at 24 fps
SHOTS_PER_VIDEO = 4

DRIVER = r"""
import json, resource, sys, time
# this process's own peak RSS: /proc's VmHWM (getrusage's ru_maxrss of a child starts at its parent's RSS at the fork,
# on Linux: the bench's own memory used to leak into this figure)
def peak_mb():
    try:
        return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from pipeline import config
from pipeline.run import run
t0 = time.perf_counter()
cfg = config.load(None, {"clip.enabled": "false", "captioner.model": "none", "ray.progress": "false"})
cfg.inputs, cfg.output = [sys.argv[1]], sys.argv[2]
summary = run(cfg)
print(json.dumps({"wall_s": time.perf_counter() - t0, "counts": summary.counts, "phases": summary.phases,
                  "driver_peak_rss_mb": peak_mb()}))
"""


def make_corpus(root: Path, n: int, width: int = 160, height: int = 96) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for v in range(n):
        rng = np.random.default_rng(v)
        frames = []
        for s in range(SHOTS_PER_VIDEO):
            pattern = PATTERNS[(v + s) % len(PATTERNS)]
            frames += [frame_pattern(pattern, i + 7 * s, width, height, rng) for i in range(SHOT_FRAMES)]
        write_frames(np.stack(frames), root / f"v{v:04d}.mp4", fps=24)


def floor_s(out: Path) -> float:
    """Seconds to decode every source frame once + encode every cut clip's frames once, as the cutter encodes them.

    One libx264 encoder per clip at the run's settings (a clip is its own stream: it opens with an IDR frame), its
    frames stamped with their source timestamps from 0 in the source's time base, and the decoder's picture type
    cleared so x264 chooses the frame types (``stages.clips._prepare``). Both matter to the encoder's cost: x264's
    rate control reads each frame's duration from the timestamps, and frame types forced from the source skip its
    own decisions. (This floor once stamped frames 0, 1, 2... but left them in the source's 1/12288 time base, which
    PyAV rescaled to 0 for the 1/24 encoder: x264's rate control saw no frame durations, spent ~38 % fewer bits on
    these corpora, and the floor came out ~15-20 % cheaper than the clips the cutter has to write.)
    """
    from pipeline import store

    con = store.open(out)
    videos = con.execute("SELECT video_id, path FROM videos WHERE status = 'ok'").fetchall()
    spans = con.execute("SELECT video_id, start_frame, end_frame FROM clips WHERE clip_path IS NOT NULL").fetchall()
    return _encode_floor([(p, sorted((a, b) for vid, a, b in spans if vid == video_id)) for video_id, p in videos])


def _encode_floor(jobs: list[tuple[str, list[tuple[int, int]]]]) -> float:
    """Wall seconds of :func:`floor_s`'s decode + encode over ``jobs``: (source path, its clips' [start, end) frame
    spans)."""
    import av

    from stages.clips import ClipsConfig, encoder_options

    cfg = ClipsConfig()
    no_type = av.video.frame.PictureType.NONE
    t0 = time.perf_counter()
    for path, mine in jobs:
        with av.open(path) as c:
            stream = c.streams.video[0]
            encoders: dict = {}  # (start, end) -> (sink, encoder, pts of the clip's first frame)
            for i, frame in enumerate(c.decode(stream)):
                src_pts = frame.pts
                for a, b in mine:
                    if not a <= i < b:
                        continue
                    if (a, b) not in encoders:
                        sink = av.open(os.devnull, "w", format="mp4")
                        enc = sink.add_stream("libx264", rate=stream.average_rate, options=encoder_options(cfg))
                        enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
                        enc.time_base = enc.codec_context.time_base = stream.time_base
                        encoders[a, b] = (sink, enc, src_pts)
                    sink, enc, first = encoders[a, b]
                    f = frame.reformat(format="yuv420p")
                    f.pts, f.time_base, f.pict_type = src_pts - first, stream.time_base, no_type
                    for p in enc.encode(f):
                        sink.mux(p)
                    if i + 1 == b:
                        for p in enc.encode(None):
                            sink.mux(p)
                        sink.close()
                        del encoders[a, b]
            for sink, enc, _ in encoders.values():  # a source shorter than its clips' spans
                for p in enc.encode(None):
                    sink.mux(p)
                sink.close()
    return time.perf_counter() - t0


def scorer_profile(out: Path, max_clips: int = 12) -> dict:
    """Where the CPU scorer's time goes, as a run spends it (``scores.at_cut``: ``CpuScorer.score_encoded`` on the
    frames a clip's encoder received): cProfile over up to ``max_clips`` cut clips, each clip's wanted frames read
    beforehand (not profiled; ``decode_s_per_clip``, timed apart, is what scoring from the file would add)."""
    import cProfile
    import pstats

    from pipeline import store
    from stages.cpu_scores import CpuScorer, CpuScoresConfig
    from stages.frames import read_frames
    from stages.resources import limit_threads

    limit_threads(1)
    con = store.open(out)
    rows = con.execute(
        "SELECT clip_path, num_frames, fps FROM clips WHERE clip_path IS NOT NULL ORDER BY clip_id LIMIT ?",
        [max_clips],
    ).fetchall()
    if not rows:
        return {}
    scorer = CpuScorer(CpuScoresConfig(ocr_threads=1), root=out)
    clips, decode_s = [], 0.0
    for path, nf, fps in rows:
        wanted = scorer.wanted(nf, fps)
        t0 = time.perf_counter()
        frames = read_frames(out / path, wanted)
        decode_s += time.perf_counter() - t0
        clips.append((dict(zip(wanted, frames, strict=True)), nf, fps))
    scorer.score_encoded(*clips[0])  # warm the OCR session
    prof = cProfile.Profile()
    prof.enable()
    for frames, nf, fps in clips:
        scorer.score_encoded(frames, nf, fps)
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tottime, cumtime, callers)}

    def cum(func: str, file_part: str) -> float:
        return sum(v[3] for k, v in stats.items() if k[2] == func and file_part in k[0])

    total = cum("score_encoded", "cpu_scores")
    parts = {
        # the scorer calls TextDetector.detect (boxes() filters its result to text lines)
        "text_detector": cum("detect", "cpu_scores"),
        # every DIS flow (motion, still_residual, overlay): cv2's DenseOpticalFlow.calc, a builtin in the profile
        "flows": sum(v[3] for k, v in stats.items() if "DenseOpticalFlow" in k[2]),
        "overlay": cum("overlay_scores", "cpu_scores"),
    }
    parts["rest"] = total - sum(parts.values())
    n = len(rows)
    return {
        "clips": n,
        "s_per_clip": round(total / n, 4),
        "decode_s_per_clip": round(decode_s / n, 4),
        "parts_s_per_clip": {k: round(v / n, 4) for k, v in parts.items()},
        "parts_share": {k: round(v / total, 3) for k, v in parts.items()} if total else {},
    }


def cpu_budget(corpus: Path, work: Path) -> dict:
    """CPU seconds of each stage's work on ``corpus`` against the floor's, all measured in this process with
    ``time.process_time`` (every thread of the process counts), one stage after the other over the whole corpus, at
    the default settings (hybrid shots, the CPU scorer), each stage limited to one thread as its Ray worker is.

    Wall time on a shared machine mixes in the other stages and the machine's load (the graph's ``busy`` seconds are
    wall seconds of concurrent workers); CPU seconds say what each stage costs. ``two_core_bound_over_floor`` is the
    sum of the stages' CPU seconds spread over 2 cores (this machine), over the floor's wall seconds: the lowest
    wall_over_floor any schedule of this work can reach here, Ray's own costs left out.
    """
    import time

    from stages.clips import ClipsConfig, cut_video
    from stages.cpu_scores import CpuScorer, CpuScoresConfig
    from stages.probe import probe
    from stages.resources import limit_threads
    from stages.shots import ShotsConfig, shots_row

    paths = sorted(str(p) for p in corpus.glob("*.mp4"))
    cpu: dict = {}

    def timed(name, fn, *a):
        c0 = time.process_time()
        r = fn(*a)
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - c0
        return r

    limit_threads(1)
    videos = [timed("probe", probe, {"path": p, "video_id": f"v{i}"}) for i, p in enumerate(paths)]
    shots = [timed("shots", shots_row, v, ShotsConfig()) for v in videos]
    clips = []
    for v, sh in zip(videos, shots, strict=True):
        clips += timed("cut", cut_video, v, sh, work, ClipsConfig())[1]
    scorer = CpuScorer(CpuScoresConfig(ocr_threads=1), root=work)
    for c in clips:
        if c.get("clip_path"):
            timed("scores", scorer.score_clip, work / c["clip_path"], c["num_frames"], c["fps"])
    # the run's default (scores.at_cut): the cut task scores each clip from the frames it hands the encoder
    at_cut = work / "at_cut"
    atc = CpuScorer(CpuScoresConfig(ocr_threads=1, root=str(at_cut)))

    for v, sh in zip(videos, shots, strict=True):
        timed("cut_with_scores_at_cut", cut_video, v, sh, at_cut, ClipsConfig(), (), atc.wanted, atc.score_cut)
    # ... and the shots detected in the same task, from the same decode (clips.one_pass, the default with hybrid)
    from stages.onepass import detect_and_cut

    one_pass = work / "one_pass"
    for v in videos:
        timed("one_pass_with_scores_at_cut", detect_and_cut, v, ShotsConfig(), one_pass, ClipsConfig(), (),
              atc.wanted, atc.score_cut)  # fmt: skip
    # the floor, the same way floor_s measures it: decode every source frame, encode every clip's frames
    out = {k: round(v, 2) for k, v in cpu.items()}
    c0, w0 = time.process_time(), time.perf_counter()
    jobs = [(v["path"], sorted((c["start_frame"], c["end_frame"]) for c in clips if c["video_id"] == v["video_id"]
                               and c.get("clip_path"))) for v in videos]  # fmt: skip
    floor_wall = _encode_floor(jobs)
    floor_cpu = time.process_time() - c0
    total = cpu["probe"] + cpu["shots"] + cpu["cut"] + cpu.get("scores", 0.0)  # scores from the clip files
    total_at_cut = cpu["probe"] + cpu["shots"] + cpu["cut_with_scores_at_cut"]
    total_one_pass = cpu["probe"] + cpu["one_pass_with_scores_at_cut"]
    return {
        "clips": len(clips),
        "stage_cpu_s": out,
        "floor_cpu_s": round(floor_cpu, 2),
        "floor_wall_s": round(floor_wall, 2),
        "stage_cpu_over_floor_cpu": {k: round(v / floor_cpu, 3) for k, v in cpu.items()},
        "total_cpu_over_floor_cpu": round(total / floor_cpu, 3),
        "two_core_bound_over_floor": round(total / 2 / floor_wall, 3),
        "total_at_cut_cpu_over_floor_cpu": round(total_at_cut / floor_cpu, 3),
        "two_core_bound_at_cut_over_floor": round(total_at_cut / 2 / floor_wall, 3),
        "total_one_pass_cpu_over_floor_cpu": round(total_one_pass / floor_cpu, 3),
        "two_core_bound_one_pass_over_floor": round(total_one_pass / 2 / floor_wall, 3),
        "measure_s": round(time.perf_counter() - w0, 1),
    }


def profile(out: Path) -> dict:
    from pipeline import store

    con = store.open(out)
    q = {
        "probe_s": "SELECT sum(probe_s) FROM videos",
        "detect_s": "SELECT sum(detect_s) FROM shots",
        "cut_s": "SELECT sum(cut_s) FROM shots",
        "scores_s": "SELECT sum(scores_s) FROM clips",
    }
    return {k: round(float(con.execute(v).fetchone()[0] or 0.0), 3) for k, v in q.items()}


def busy(out: Path) -> dict:
    """Per-stage busy intervals of the graph (runs/<id>.busy/*.jsonl) and how long two stages overlapped."""
    rows = []
    for f in (out / "runs").glob("*.busy/*.jsonl"):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    t0 = min(r["t0"] for r in rows)
    stages: dict = {}
    for r in rows:
        s = stages.setdefault(r["stage"], {"first": r["t0"], "last": r["t1"], "busy_s": 0.0, "calls": 0})
        s["first"], s["last"] = min(s["first"], r["t0"]), max(s["last"], r["t1"])
        s["busy_s"] += r["t1"] - r["t0"]
        s["calls"] += 1
    # sweep: time during which >= 2 distinct stages had a call in progress
    events = sorted([(r["t0"], 1, r["stage"]) for r in rows] + [(r["t1"], -1, r["stage"]) for r in rows])
    active: dict = {}
    overlap, last = 0.0, None
    for t, d, stage in events:
        if last is not None and sum(1 for v in active.values() if v > 0) >= 2:
            overlap += t - last
        active[stage] = active.get(stage, 0) + d
        last = t
    out_stages = {
        k: {
            "start": round(v["first"] - t0, 3),
            "end": round(v["last"] - t0, 3),
            "busy_s": round(v["busy_s"], 3),
            "calls": v["calls"],
        }
        for k, v in sorted(stages.items(), key=lambda kv: kv[1]["first"])
    }
    return {"stages": out_stages, "overlap_s": round(overlap, 3)}


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat's first line (Linux; None elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def run_once(code_root: Path, corpus: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    before = _cpu_ticks()
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, str(corpus), str(out)], capture_output=True, text=True, cwd=code_root, env=env
    )
    after = _cpu_ticks()
    if res.returncode:
        raise SystemExit(res.stdout + res.stderr)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    t, intervals = 0.0, {}
    for name, secs in r["phases"].items():
        intervals[name] = [round(t, 3), round(t + secs, 3)]
        t += secs
    clips = r["counts"]["clips"]
    return {
        "clips": clips,
        "wall_s": round(r["wall_s"], 2),
        "clips_per_s": round(clips / r["wall_s"], 3),
        "driver_peak_rss_mb": round(r["driver_peak_rss_mb"], 1),
        # the share of the machine's CPU time that was busy while the run went (anything running counts)
        "machine_busy": round((after[0] - before[0]) / max(1, after[1] - before[1]), 3) if before and after else None,
        "phases": intervals,
        "busy": busy(out),
        "profile": profile(out),
    }


def _child(flag: str, path: Path) -> dict:
    """This script's ``flag`` mode on ``path`` in a child process (its limit_threads(1) must not change this
    process's thread counts, which the next floor measures with): the JSON of its last output line."""
    r = subprocess.run(
        [sys.executable, __file__, flag, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2, help="videos in the smallest corpus (then 4n and 16n)")
    ap.add_argument("--baseline", default="9cfbb07", help="git revision of the phase-by-phase run ('' = skip)")
    ap.add_argument("--baseline-name", default="phased", help="what the baseline is called in the JSON")
    ap.add_argument("--size", default="160x96", help="frame size WxH of the synthetic videos")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    ap.add_argument("--scorer-profile", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-budget", metavar="CORPUS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scorer_profile:
        print(json.dumps(scorer_profile(Path(args.scorer_profile))))
        return
    if args.cpu_budget:
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(cpu_budget(Path(args.cpu_budget), Path(work))))
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    results = {"n": args.n, "shots_per_video": SHOTS_PER_VIDEO, "shot_s": SHOT_FRAMES / 24, "size": args.size}
    results["baseline"] = args.baseline or None
    results["sizes"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"streaming": ROOT}
        if args.baseline:
            wt = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(wt), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            versions[args.baseline_name] = wt
        try:
            for mult in (1, 4, 16):
                n = args.n * mult
                corpus = Path(tmp) / f"corpus{n}"
                make_corpus(corpus, n, width, height)
                entry: dict = {"videos": n}
                for name, code_root in versions.items():
                    out = Path(tmp) / f"out{n}-{name}"
                    entry[name] = run_once(code_root, corpus, out)
                    if name == "streaming":
                        fl = floor_s(out)
                        entry["floor_s"] = round(fl, 2)
                        entry[name]["scorer_profile"] = _child("--scorer-profile", out)
                        if mult == 4:  # the stages' CPU seconds against the floor's, in a child process (one thread)
                            entry["cpu_budget"] = _child("--cpu-budget", corpus)
                    entry[name]["wall_over_floor"] = round(entry[name]["wall_s"] / entry["floor_s"], 2)
                    shutil.rmtree(out, ignore_errors=True)
                base = args.baseline_name
                if base in entry:
                    entry[f"streaming_over_{base}"] = round(entry["streaming"]["wall_s"] / entry[base]["wall_s"], 3)
                results["sizes"][str(n)] = entry
                print(n, json.dumps(entry), flush=True)
        finally:
            if args.baseline_name in versions:
                subprocess.run(["git", "worktree", "remove", "--force", str(versions[args.baseline_name])], cwd=ROOT)
    s = results["sizes"]
    for name in versions:
        results[f"rss_16n_over_n_{name}"] = round(
            s[str(16 * args.n)][name]["driver_peak_rss_mb"] / s[str(args.n)][name]["driver_peak_rss_mb"], 3
        )
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}))


if __name__ == "__main__":
    main()
