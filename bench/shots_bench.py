"""Shot detection benchmark: accuracy and speed of every detector in one run.

    .venv/bin/python bench/shots_bench.py [--repeats 3] [--out bench/results/shots.json]

Accuracy: the synthesized videos of bench/synth.py (hard cuts, dissolves, fades through black, plus camera flashes,
a fast zoom and fast pans that must NOT cut) and the real bikes.mp4 (cuts 30 76 137 187 242) and bigbuckbunny.mp4
(one shot). A predicted boundary (start frame of every scene but the first) matches a hard cut within +-1 frame and
a gradual transition when it falls inside the transition's span +-2 frames; each truth and each prediction matches
at most once. Precision, recall and F1 are micro-averaged over all videos.

Speed: frames per second with ONE FRESH PROCESS PER VIDEO (``SCENES_CMD``, start-up and imports included), the
way ``clipforge scenes VIDEO --json`` runs, and in-process (model already loaded, the pipeline's case). Each timing
is the median of ``--repeats`` runs, interleaved across detectors so machine noise hits all of them alike, and
is reported as a ratio to PySceneDetect's ContentDetector measured in the same run (> 1 = faster than content).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import scratch_dir  # noqa: E402

from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from stages.shots import DETECTORS, ShotsConfig, TransNetV2Detector, detect  # noqa: E402

# One fresh process per video; {video} and {detector} are filled in. The CLI will replace this with
# [sys.executable, "-m", "pipeline.cli", "scenes", "{video}", "--json", "--detector", "{detector}"].
SCENES_CMD = [sys.executable, "-m", "pipeline.cli", "scenes", "{video}", "--json", "--detector", "{detector}"]
BASELINE = "content"


def boundaries(result: dict) -> list[int]:
    """Predicted cut frames: the start of every scene but the first."""
    return [s["start_frame"] for s in result["scenes"][1:]]


def _window(event: dict) -> tuple[int, int, float]:
    """(lowest, highest) matching boundary frame and the event's centre."""
    if event["type"] == "cut":
        f = event["frame"]
        return f - 1, f + 1, float(f)
    a, b = event["span"]
    return a - 2, b + 2, (a + b) / 2


def score(pred: list[int], events: list[dict]) -> dict:
    """Greedy one-to-one matching, closest pairs first. Returns tp, fp, fn and per-type hits."""
    pairs = []
    for ei, e in enumerate(events):
        lo, hi, mid = _window(e)
        pairs += [(abs(p - mid), ei, pi) for pi, p in enumerate(pred) if lo <= p <= hi]
    used_e, used_p = set(), set()
    for _, ei, pi in sorted(pairs):
        if ei not in used_e and pi not in used_p:
            used_e.add(ei)
            used_p.add(pi)
    by_type: dict[str, list[int]] = {}
    for ei, e in enumerate(events):
        hit = by_type.setdefault(e["type"], [0, 0])
        hit[0] += ei in used_e
        hit[1] += 1
    unmatched = [p for pi, p in enumerate(pred) if pi not in used_p]
    return {
        "tp": len(used_e),
        "fp": len(unmatched),
        "fn": len(events) - len(used_e),
        "by_type": by_type,
        "unmatched": unmatched,
    }


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}


def distractor_hits(false_cuts: list[int], distractors: list[dict]) -> int:
    """False cuts (unmatched predictions) inside a flash / zoom / pan span +-1: cuts the distractor caused."""
    return sum(any(d["span"][0] - 1 <= p <= d["span"][1] for d in distractors) for p in false_cuts)


def cases(workdir: Path) -> list[dict]:
    from synth import write_benchmark

    rows = write_benchmark(workdir)
    rows.append(
        {
            "path": str(sample_video("bikes")),
            "name": "bikes.mp4",
            "frames": 250,
            "events": [{"type": "cut", "frame": f} for f in BIKES_CUTS],
            "distractors": [],
        }
    )
    rows.append(
        {
            "path": str(sample_video("bigbuckbunny")),
            "name": "bigbuckbunny.mp4",
            "frames": 132,
            "events": [],
            "distractors": [],
        }
    )
    return rows


def fresh_process(video: str, detector: str) -> tuple[float, float, dict]:
    """Run SCENES_CMD once: (wall seconds, CPU seconds of the child incl. its threads, parsed JSON)."""
    cmd = [c.format(video=video, detector=detector) for c in SCENES_CMD]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, json.loads(out.stdout)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing runs per video and detector (median)")
    parser.add_argument("--transnet-repeats", type=int, default=2, help="fewer for TransNetV2: ~10 fps on CPU")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--out", default=str(ROOT / "bench/results/shots.json"))
    parser.add_argument("--workdir", default=None, help="where synthesized videos go (default: a temp dir)")
    args = parser.parse_args(argv)
    detectors = list(dict.fromkeys([BASELINE, *args.detectors]))

    workdir = Path(args.workdir) if args.workdir else scratch_dir("shots_bench_")
    videos = cases(workdir)
    t0 = time.perf_counter()
    transnet = TransNetV2Detector(ShotsConfig(detector="transnetv2")) if "transnetv2" in detectors else None
    transnet_load_s = time.perf_counter() - t0

    def repeats(d: str) -> int:
        return args.transnet_repeats if d == "transnetv2" else args.repeats

    # Accuracy and in-process speed (the TransNetV2 model is loaded once, as a pipeline actor does).
    inproc: dict[str, dict[str, dict]] = {d: {} for d in detectors}
    for r in range(args.repeats):
        for v in videos:
            for d in detectors:
                if r >= repeats(d):
                    continue
                t0 = time.perf_counter()
                res = detect(v["path"], ShotsConfig(detector=d), transnet=transnet)
                dt = time.perf_counter() - t0
                slot = inproc[d].setdefault(v["name"], {"times": [], "result": res})
                slot["times"].append(dt)
    # Fresh-process speed, interleaved across detectors.
    fresh: dict[str, dict[str, list[float]]] = {d: {v["name"]: [] for v in videos} for d in detectors}
    fresh_cpu: dict[str, dict[str, list[float]]] = {d: {v["name"]: [] for v in videos} for d in detectors}
    for r in range(args.repeats):
        for v in videos:
            for d in detectors:
                if r >= repeats(d):
                    continue
                wall, cpu, res = fresh_process(v["path"], d)
                if boundaries(res) != boundaries(inproc[d][v["name"]]["result"]):
                    raise RuntimeError(f"{d} on {v['name']}: fresh process and in-process results differ")
                fresh[d][v["name"]].append(wall)
                fresh_cpu[d][v["name"]].append(cpu)

    report: dict = {
        "command": "python bench/shots_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "scenes_cmd": " ".join(SCENES_CMD[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "repeats": args.repeats,
        "transnet_repeats": args.transnet_repeats,
        "transnet_load_s": round(transnet_load_s, 2),
        "baseline": BASELINE,
        "videos": [{k: v[k] for k in ("name", "frames", "events", "distractors")} for v in videos],
        "detectors": {},
    }
    for d in detectors:
        tp = fp = fn = flash_fp = 0
        by_type: dict[str, list[int]] = {}
        per_video = {}
        frames = fresh_s = inproc_s = base_fresh_s = base_inproc_s = cpu_s = base_cpu_s = 0.0
        for v in videos:
            res = inproc[d][v["name"]]["result"]
            pred = boundaries(res)
            s = score(pred, v["events"])
            tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
            for k, (hit, n) in s["by_type"].items():
                agg = by_type.setdefault(k, [0, 0])
                agg[0] += hit
                agg[1] += n
            flash_fp += distractor_hits(s["unmatched"], v["distractors"])
            f_med = statistics.median(fresh[d][v["name"]])
            i_med = statistics.median(inproc[d][v["name"]]["times"])
            bf_med = statistics.median(fresh[BASELINE][v["name"]])
            frames += res["frames"]
            fresh_s, inproc_s, base_fresh_s = fresh_s + f_med, inproc_s + i_med, base_fresh_s + bf_med
            base_inproc_s += statistics.median(inproc[BASELINE][v["name"]]["times"])
            cpu_s += statistics.median(fresh_cpu[d][v["name"]])
            base_cpu_s += statistics.median(fresh_cpu[BASELINE][v["name"]])
            per_video[v["name"]] = {
                "pred": pred,
                "tp": s["tp"],
                "fp": s["fp"],
                "fn": s["fn"],
                "fresh_fps": round(res["frames"] / f_med, 1),
                "inproc_fps": round(res["frames"] / i_med, 1),
                "fresh_speed_vs_content": round(bf_med / f_med, 3),
            }
        report["detectors"][d] = {
            **prf(tp, fp, fn),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "recall_by_type": {k: f"{h}/{n}" for k, (h, n) in sorted(by_type.items())},
            "false_cuts_on_distractors": flash_fp,
            "fresh_fps": round(frames / fresh_s, 1),
            "inproc_fps": round(frames / inproc_s, 1),
            "fresh_speed_vs_content": round(base_fresh_s / fresh_s, 3),
            "inproc_speed_vs_content": round(base_inproc_s / inproc_s, 3),
            "fresh_cpu_s": round(cpu_s, 3),
            "fresh_cpu_vs_content": round(base_cpu_s / cpu_s, 3),
            "per_video": per_video,
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    return report


def table(report: dict) -> str:
    """The markdown table docs/PERFORMANCE.md quotes."""
    lines = [
        "| detector | precision | recall | F1 | recall: cut / dissolve / fade | false cuts on flash/zoom/pan "
        "| fresh-process fps | x content (wall) | x content (CPU) | in-process fps | x content |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, r in report["detectors"].items():
        rt = r["recall_by_type"]
        lines.append(
            f"| {d} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
            f"| {rt.get('cut', '-')} / {rt.get('dissolve', '-')} / {rt.get('fade', '-')} "
            f"| {r['false_cuts_on_distractors']} | {r['fresh_fps']:.0f} | {r['fresh_speed_vs_content']:.2f} "
            f"| {r['fresh_cpu_vs_content']:.2f} "
            f"| {r['inproc_fps']:.0f} | {r['inproc_speed_vs_content']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
