"""stages.clips: plan rules, and cutting real and synthesized videos checked frame by frame."""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction

import av
import cv2
import decord
import numpy as np
import pytest

from pipeline.footage import BIKES_CUTS
from pipeline.schema import CLIPS
from pipeline.testdata import INDEX_DIGITS, decode_index, make_indexed_video
from stages.clips import (
    CROP_COLUMNS,
    ClipsConfig,
    clip_id,
    clip_relpath,
    cut_clips,
    cut_video,
    encoder_options,
    output_size,
    plan_clips,
    settings_of,
)
from stages.frames import read_frames, video_meta
from stages.media import timeline
from stages.shots import ShotsConfig, scenes_from_spans, shots_row

# ------------------------------------------------------------------------------------------------ helpers


def clip_indices(path) -> list[int]:
    """Source indices held by a written clip, from a plain sequential PyAV decode (no sampler involved)."""
    with av.open(str(path)) as c:
        return [decode_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def video_row(path, video_id="v", content_hash="h" * 16, caption="a video"):
    m = video_meta(path)
    return {
        "video_id": video_id,
        "content_hash": content_hash,
        "fps": m["fps"],
        "num_frames": m["num_frames"],
        "width": m["width"],
        "height": m["height"],
        "original_caption": caption,
    }


def spans(*pairs):
    return [{"start_frame": a, "end_frame": b} for a, b in pairs]


def kept(rows):
    return [(r["start_frame"], r["end_frame"]) for r in rows if r["drop_reason"] is None]


GOP25 = {"x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=3"}
VIDEO25 = {"video_id": "v", "content_hash": "c0ffee", "fps": 25.0, "num_frames": 10_000, "original_caption": "cap"}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """400 frames at 25 fps, H.264 with B-frames, keyframes every 25 frames only."""
    return make_indexed_video(tmp_path_factory.mktemp("clips") / "indexed.mp4", 400, opts=GOP25)


# ------------------------------------------------------------------------------------------------ planning


def test_plan_columns_are_the_clips_schema():
    rows = plan_clips(VIDEO25, spans((0, 100)), ClipsConfig(), "transnetv2")
    assert len(rows) == 1 and set(rows[0]) == set(CLIPS.names)
    r = rows[0]
    assert (r["start_s"], r["end_s"], r["duration_s"]) == (0.0, 4.0, 4.0)
    assert all(r[k] is None for k in ("clip_path", "num_frames", "fps", "width", "height", "clip_bytes"))
    assert r["source_hash"] == "c0ffee" and r["video_id"] == "v" and r["drop_reason"] is None
    assert json.loads(r["settings"]) == settings_of(ClipsConfig(), "transnetv2")


def test_plan_min_max_and_equal_chunks():
    cfg = ClipsConfig(min_s=2.0, max_s=10.0)
    rows = plan_clips(VIDEO25, spans((0, 49), (49, 99), (99, 349), (349, 600), (600, 1224)), cfg, "d")
    # 49 frames < 2 s: a row, not cut; 50 frames = 2 s: kept; 250 = 10 s: one clip;
    # 251 frames > 10 s: two equal pieces; 624 frames: ceil(624/250) = 3 pieces of 208
    assert [(r["start_frame"], r["end_frame"], r["drop_reason"], r["shot_index"]) for r in rows] == [
        (0, 49, "duration_short", 0),
        (49, 99, None, 1),
        (99, 349, None, 2),
        (349, 474, None, 3),
        (474, 600, None, 3),
        (600, 808, None, 4),
        (808, 1016, None, 4),
        (1016, 1224, None, 4),
    ]
    assert all(r["duration_s"] <= cfg.max_s for r in rows)


def test_plan_chunks_when_min_is_over_half_max():
    # equal halves of 11 s would be 5.5 s < min 6 s: cut 10 s from the start, the 1 s rest is a short row
    rows = plan_clips(VIDEO25, spans((0, 275)), ClipsConfig(min_s=6.0, max_s=10.0), "d")
    assert [(r["start_frame"], r["end_frame"], r["drop_reason"]) for r in rows] == [
        (0, 250, None),
        (250, 275, "duration_short"),
    ]
    # 17 s: equal halves of 8.5 s are long enough
    rows = plan_clips(VIDEO25, spans((0, 425)), ClipsConfig(min_s=6.0, max_s=10.0), "d")
    assert kept(rows) == [(0, 212), (212, 425)] and len(rows) == 2


def test_plan_trim_and_captions_and_clipping():
    video = {**VIDEO25, "num_frames": 300}
    scenes = [
        {"start_frame": 0, "end_frame": 100, "caption": "first shot"},
        {"start_frame": 100, "end_frame": 170},
        {"start_frame": 170, "end_frame": 185},  # emptied by the trim
        {"start_frame": 185, "end_frame": 400},  # runs past the video: clipped to 300
    ]
    rows = plan_clips(video, scenes, ClipsConfig(trim_s=0.4), "d")  # 10 frames each side
    assert [(r["start_frame"], r["end_frame"], r["drop_reason"], r["shot_index"]) for r in rows] == [
        (10, 90, None, 0),
        (110, 160, None, 1),
        (170, 185, "duration_short", 2),  # the untrimmed span, so the row still locates the shot
        (195, 290, None, 3),
    ]
    assert [r["original_caption"] for r in rows] == ["first shot", "cap", "cap", "cap"]
    with pytest.raises(ValueError, match="fps"):
        plan_clips({**VIDEO25, "fps": None}, spans((0, 10)), ClipsConfig(), "d")


def test_clip_ids_are_deterministic_and_change_with_span_and_settings():
    s = settings_of(ClipsConfig(), "transnetv2")
    a = clip_id("hash", 10, 60, s)
    assert re.fullmatch(r"[0-9a-f]{24}", a) and a == clip_id("hash", 10, 60, dict(reversed(list(s.items()))))
    others = {
        clip_id("hash", 11, 60, s),
        clip_id("hash", 10, 61, s),
        clip_id("hash2", 10, 60, s),
        clip_id("hash", 10, 60, settings_of(ClipsConfig(crf=23), "transnetv2")),
        clip_id("hash", 10, 60, settings_of(ClipsConfig(short_side=256), "transnetv2")),
        clip_id("hash", 10, 60, settings_of(ClipsConfig(fps=12), "transnetv2")),
        clip_id("hash", 10, 60, settings_of(ClipsConfig(), "pyscenedetect")),
    }
    assert a not in others and len(others) == 7
    # CPUs change speed, not the clip
    assert settings_of(ClipsConfig(num_cpus=4), "t") == settings_of(ClipsConfig(), "t")
    first = plan_clips(VIDEO25, spans((0, 100), (100, 400)), ClipsConfig(), "t")
    assert [r["clip_id"] for r in first] == [
        r["clip_id"] for r in plan_clips(VIDEO25, spans((0, 100), (100, 400)), ClipsConfig(), "t")
    ]
    assert len({r["clip_id"] for r in first}) == 3


def test_output_size_even_and_never_upscaled():
    assert output_size(640, 272, None) == (640, 272)
    assert output_size(640, 272, 136) == (320, 136)
    assert output_size(640, 272, 100) == (236, 100)
    assert output_size(175, 143, None) == (174, 142)
    assert output_size(176, 144, 256) == (176, 144)
    assert output_size(1080, 1920, 720) == (720, 1280)


# ------------------------------------------------------------------------------------------------ cutting


def test_frame_accurate_cuts_off_keyframes(indexed, tmp_path):
    """Spans start mid-GOP (keyframes are at multiples of 25), skip gaps (seeks), and overlap."""
    cfg = ClipsConfig(min_s=0.1)
    plan_spans = [(7, 31), (31, 63), (63, 100), (130, 187), (301, 352), (340, 399), (399, 400)]
    plans = plan_clips(video_row(indexed), spans(*plan_spans), cfg, "d")
    plans[-1]["drop_reason"] = None  # a one-frame clip (min_s would drop it): the last frame of the source
    rows = cut_clips(str(indexed), video_row(indexed), plans, tmp_path, cfg)
    assert [r["drop_reason"] for r in rows] == [None] * len(plan_spans)
    for r, (a, b) in zip(rows, plan_spans, strict=True):
        path = tmp_path / r["clip_path"]
        assert r["clip_path"] == clip_relpath(r["clip_id"]) and path.is_file()
        assert clip_indices(path) == list(range(a, b)), (a, b)
        assert r["num_frames"] == b - a and r["fps"] == 25.0 and (r["width"], r["height"]) == (160, 64)
        assert r["clip_bytes"] == path.stat().st_size
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            frames = list(c.decode(s))
            assert frames[0].key_frame  # starts on a keyframe: plays from its first frame
            # timestamps from 0, one source frame duration apart (overlapping clips share decoded frames)
            assert [float(f.pts * f.time_base) for f in frames] == pytest.approx([k / 25 for k in range(b - a)])
            assert float(s.duration * s.time_base) == pytest.approx((b - a) / 25)


def test_bikes_cut_at_its_shots(bikes, tmp_path):
    cfg = ClipsConfig(min_s=1.0)
    bounds = [0, *BIKES_CUTS, 250]
    video = video_row(bikes)
    plans = plan_clips(video, spans(*zip(bounds, bounds[1:], strict=False)), cfg, "transnetv2")
    rows = cut_clips(str(bikes), video, plans, tmp_path, cfg)
    assert [(r["start_frame"], r["end_frame"], r["drop_reason"]) for r in rows] == [
        (0, 30, None),
        (30, 76, None),
        (76, 137, None),
        (137, 187, None),
        (187, 242, None),
        (242, 250, "duration_short"),
    ]
    assert rows[-1]["clip_path"] is None
    per_frame = []
    for r in rows[:-1]:
        path = str(tmp_path / r["clip_path"])
        n = r["end_frame"] - r["start_frame"]
        assert (r["num_frames"], r["fps"], r["width"], r["height"]) == (n, 25.0, 640, 272)
        with av.open(path) as c:
            s = c.streams.video[0]
            assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
            assert float(c.duration / av.time_base) == pytest.approx(n / 25, abs=0.02)
            assert sum(1 for _ in c.decode(s)) == n
        assert len(decord.VideoReader(path)) == n
        # pixels are the source's frames (one CRF-20 generation of loss)
        clip = read_frames(path, [0, n // 2, n - 1])
        src = read_frames(bikes, [r["start_frame"], r["start_frame"] + n // 2, r["end_frame"] - 1])
        assert np.abs(clip.astype(int) - src).mean() < 4
        # constant quality, not a bitrate: the x264 header records rc=crf with our CRF and preset
        head = open(path, "rb").read()
        settings = re.search(rb"x264 - core \d+.*?options: ([^\x00]*)", head, re.S).group(1).decode()
        assert "rc=crf" in settings and "crf=20.0" in settings and "bitrate" not in settings
        per_frame.append(r["clip_bytes"] / n)
    # the +faststart: the index (moov) comes before the media data
    assert head.find(b"moov") < head.find(b"mdat")
    # with CRF, bytes follow content: the shots of bikes differ by far more than a bitrate would allow
    assert max(per_frame) / min(per_frame) > 1.2


def test_crf_sizes_follow_content(bikes, indexed, tmp_path):
    """Same frame count and CRF: flat synthetic bars take a small fraction of the bytes of real footage."""
    cfg = ClipsConfig(min_s=0.1)
    flat = cut_clips(str(indexed), video_row(indexed), plan_clips(video_row(indexed), spans((0, 50)), cfg, "d"),
                     tmp_path, cfg)[0]  # fmt: skip
    real = cut_clips(str(bikes), video_row(bikes), plan_clips(video_row(bikes), spans((137, 187)), cfg, "d"),
                     tmp_path, cfg)[0]  # fmt: skip
    assert real["clip_bytes"] > 10 * flat["clip_bytes"]
    lower = ClipsConfig(min_s=0.1, crf=35)
    worse = cut_clips(str(bikes), video_row(bikes), plan_clips(video_row(bikes), spans((137, 187)), lower, "d"),
                      tmp_path, lower)[0]  # fmt: skip
    assert worse["clip_bytes"] < real["clip_bytes"] / 2


def test_encoder_options():
    assert encoder_options(ClipsConfig()) == {"crf": "20", "preset": "veryfast", "threads": "1"}
    assert encoder_options(ClipsConfig(crf=18, preset="slow", num_cpus=2))["crf"] == "18"


def test_short_side_resize(bikes, tmp_path):
    cfg = ClipsConfig(short_side=100, min_s=1.0)
    video = video_row(bikes)
    rows = cut_clips(str(bikes), video, plan_clips(video, spans((30, 76)), cfg, "d"), tmp_path, cfg)
    r = rows[0]
    assert (r["width"], r["height"], r["num_frames"]) == (236, 100, 46)
    assert video_meta(tmp_path / r["clip_path"])["width"] == 236
    small = read_frames(tmp_path / r["clip_path"], [10])[0]
    ref = read_frames(bikes, [40], size=(236, 100))[0]
    assert np.abs(small.astype(int) - ref).mean() < 6


def test_crop_bars_cuts_the_active_picture_and_is_off_by_default(bikes, tmp_path):
    """bikes (640x272) letterboxed into 640x360 (44-line black bars): with ``crop_bars`` its clips are the 640x272
    picture again, pixel for pixel close to the source; the option is in the clip ids only when on, and a source
    without bars is cut as without the option."""
    from pipeline.defects import letterbox
    from pipeline.testdata import decode_frames, write_frames

    boxed = write_frames(letterbox(decode_frames(bikes, 30, 76)), tmp_path / "boxed.mp4", fps=25)
    video = video_row(boxed)
    off, on = ClipsConfig(min_s=1.0), ClipsConfig(min_s=1.0, crop_bars=True)
    assert "crop_bars" not in settings_of(off, "d") and settings_of(on, "d")["crop_bars"] is True
    plain = cut_clips(str(boxed), video, plan_clips(video, spans((0, 46)), off, "d"), tmp_path / "off", off)[0]
    cropped = cut_clips(str(boxed), video, plan_clips(video, spans((0, 46)), on, "d"), tmp_path / "on", on)[0]
    assert (plain["width"], plain["height"]) == (640, 360)
    assert (cropped["width"], cropped["height"], cropped["num_frames"]) == (640, 272, 46)
    assert cropped["clip_id"] != plain["clip_id"]
    got = read_frames(tmp_path / "on" / cropped["clip_path"], [10])[0].astype(int)
    ref = read_frames(bikes, [40])[0].astype(int)
    assert np.abs(got - ref).mean() < 6  # the picture, not shifted by a bar
    # what was cut is stored (schema 21): 44 lines above and below; nothing where the option is off
    assert [cropped[k] for k in CROP_COLUMNS] == [44, 44, 0, 0]
    assert [plain[k] for k in CROP_COLUMNS] == [None] * 4
    # no bars: the same frames as without the option
    unboxed = cut_clips(str(bikes), video_row(bikes), plan_clips(video_row(bikes), spans((30, 76)), on, "d"),
                        tmp_path / "plain", on)[0]  # fmt: skip
    assert (unboxed["width"], unboxed["height"]) == (640, 272)
    assert [unboxed[k] for k in CROP_COLUMNS] == [0, 0, 0, 0]


@pytest.mark.parametrize(("size", "scale"), [((960, 540), 0.8), ((640, 360), 0.7)])
def test_crop_bars_takes_the_ringing_beside_a_boxed_picture(size, scale, tmp_path):
    """bigbuckbunny scaled into black bars mid-block (768x432 at line 54 of 960x540, a newcomer's boxed copy; 448x252
    at line 54 of 640x360) and coded at x264's defaults rings 2-5 lines into each bar, which the scorer's flat-line bar
    test stops before: the cut clip is the picture alone, no dark stripe along any edge (before the fix the 960x540
    copy was cropped to 768x436 and its top and bottom lines read ~1 grey level)."""
    from pipeline.defects import boxed
    from pipeline.footage import sample_video
    from pipeline.testdata import decode_frames, write_frames

    frames = decode_frames(sample_video("bigbuckbunny"), 0, 50)
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    src = write_frames(boxed(frames, scale), tmp_path / "boxed.mp4", fps=25, crf=23, preset="medium")
    video = video_row(src)
    cfg = ClipsConfig(min_s=1.0, crop_bars=True)
    row = cut_clips(str(src), video, plan_clips(video, spans((0, 50)), cfg, "d"), tmp_path / "out", cfg)[0]
    w, h = size
    pw, ph = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
    top, left = (h - ph) // 2, (w - pw) // 2
    # the picture whole, at most the one line an odd bar's rounding to even takes
    assert pw - 1 <= row["width"] <= pw and ph - 2 <= row["height"] <= ph, (row["width"], row["height"])
    assert top <= row["crop_top"] <= top + 1 and left <= row["crop_left"] <= left + 1
    assert row["crop_top"] + row["height"] + row["crop_bottom"] == h
    assert row["crop_left"] + row["width"] + row["crop_right"] == w
    clip = read_frames(tmp_path / "out" / row["clip_path"], [0, 25, 49])
    luma = clip.astype(float).mean(axis=3).mean(axis=0)
    edges = [luma[0].mean(), luma[-1].mean(), luma[:, 0].mean(), luma[:, -1].mean()]
    assert min(edges) > 40, edges  # picture, not bar (a bar line reads 0-2)


def test_fps_normalisation_by_timestamps(indexed, tmp_path):
    cfg = ClipsConfig(fps=12, min_s=0.1)
    video = video_row(indexed)
    plan_spans = [(7, 57), (100, 146)]  # 2.0 s and 1.84 s at 25 fps
    rows = cut_clips(str(indexed), video, plan_clips(video, spans(*plan_spans), cfg, "d"), tmp_path, cfg)
    for r, (a, b) in zip(rows, plan_spans, strict=True):
        # output frame k shows the source frame covering k/12 s: a + floor(k * 25 / 12); round(duration * 12)
        # frames (nearest, as ffmpeg's fps filter): k + 1/2 < duration * 12
        expect = [a + k * 25 // 12 for k in range(100) if (k + 0.5) / 12 < (b - a) / 25]
        assert clip_indices(tmp_path / r["clip_path"]) == expect
        assert r["num_frames"] == len(expect) and r["fps"] == 12.0
    assert [r["num_frames"] for r in rows] == [24, 22]  # 2.0 s and 1.84 s at 12 fps: 24 and round(22.08)
    # upsampling duplicates frames
    up = ClipsConfig(fps=50, min_s=0.1)
    r = cut_clips(str(indexed), video, plan_clips(video, spans((10, 20)), up, "d"), tmp_path, up)[0]
    assert clip_indices(tmp_path / r["clip_path"]) == [i for i in range(10, 20) for _ in range(2)]


def test_rotated_source_is_cut_upright(tmp_path):
    src = make_indexed_video(tmp_path / "rot.mp4", 60, w=160, h=64, rotation=90)
    cfg = ClipsConfig(min_s=0.1)
    video = video_row(src)
    r = cut_clips(str(src), video, plan_clips(video, spans((13, 40)), cfg, "d"), tmp_path, cfg)[0]
    assert (r["width"], r["height"]) == (64, 160)
    out = tmp_path / r["clip_path"]
    assert video_meta(out)["rotation"] == 0  # upright pixels, no display matrix left to apply
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [decode_index(np.rot90(f, k=-1)) for f in frames] == list(range(13, 40))
    assert np.abs(frames[5].astype(int) - read_frames(src, [18])[0]).mean() < 3


def _temp_files(root):
    return [p for p in root.rglob("*") if p.is_file() and ".tmp" in p.name]


def test_atomic_writes_and_safe_rerun(indexed, tmp_path):
    cfg = ClipsConfig(min_s=0.1)
    video = video_row(indexed)
    plans = plan_clips(video, spans((5, 40), (60, 90)), cfg, "d")
    first = cut_clips(str(indexed), video, plans, tmp_path, cfg)
    assert _temp_files(tmp_path) == []
    paths = [tmp_path / r["clip_path"] for r in first]
    inodes = [os.stat(p).st_ino for p in paths]
    # a rerun replaces the files (new inodes: a reader holding the old file keeps a complete one)
    again = cut_clips(str(indexed), video, plans, tmp_path, cfg)
    assert [r["clip_path"] for r in again] == [r["clip_path"] for r in first]
    assert [os.stat(p).st_ino for p in paths] != inodes
    assert _temp_files(tmp_path) == [] and sorted(p.name for p in (tmp_path / "clips").rglob("*.mp4")) == sorted(
        p.name for p in paths
    )
    assert clip_indices(paths[1]) == list(range(60, 90))
    # resume: skipped ids are not rewritten, and their rows are filled from the existing file
    mtimes = [os.stat(p).st_mtime_ns for p in paths]
    skipped = cut_clips(str(indexed), video, plans, tmp_path, cfg, skip_ids={plans[0]["clip_id"]})
    assert os.stat(paths[0]).st_mtime_ns == mtimes[0] and os.stat(paths[1]).st_mtime_ns != mtimes[1]
    assert skipped[0]["num_frames"] == 35 and skipped[0]["clip_path"] == first[0]["clip_path"]


def test_error_on_one_clip_marks_only_that_row(indexed, tmp_path):
    cfg = ClipsConfig(min_s=0.1)
    video = video_row(indexed)
    plans = plan_clips(video, spans((5, 40), (60, 90), (120, 150), (380, 400)), cfg, "d")
    plans[3]["end_frame"] = 450  # a probe that over-counted frames: the source ends at 400
    # the second clip's final path is taken by a directory: its os.replace fails
    (tmp_path / clip_relpath(plans[1]["clip_id"])).mkdir(parents=True)
    rows = cut_clips(str(indexed), video, plans, tmp_path, cfg)
    assert rows[1]["drop_reason"] == "error_clips:IsADirectoryError" and rows[1]["error"]
    # the last runs past the end of the 400-frame source: a short clip would not hold its planned frames
    assert rows[3]["drop_reason"] == "error_clips:EOFError" and "400" in rows[3]["error"]
    assert rows[1]["clip_path"] is None and rows[3]["clip_path"] is None
    for r, (a, b) in ((rows[0], (5, 40)), (rows[2], (120, 150))):
        assert r["drop_reason"] is None and clip_indices(tmp_path / r["clip_path"]) == list(range(a, b))
    assert _temp_files(tmp_path) == []
    # rows already dropped pass through untouched
    dropped = [dict(plans[0], drop_reason="duration_short")]
    assert cut_clips(str(indexed), video, dropped, tmp_path, cfg) == dropped


def test_unreadable_source_fails_every_row(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    cfg = ClipsConfig(min_s=0.1)
    plans = plan_clips(VIDEO25, spans((0, 30), (30, 60)), cfg, "d")
    rows = cut_clips(str(bad), VIDEO25, plans, tmp_path, cfg)
    assert {r["drop_reason"] for r in rows} == {"error_clips:InvalidDataError"}
    assert all(r["error"] and r["clip_path"] is None for r in rows)
    assert not (tmp_path / "clips").exists() or _temp_files(tmp_path) == []


def synth_vfr(path, durations, tb=Fraction(1, 100)):
    """Indexed frames with irregular timestamps: frame i lasts durations[i] ticks of ``tb``."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options=GOP25)
        s.width, s.height, s.pix_fmt = 160, 64, "yuv420p"
        s.codec_context.time_base = tb
        pts = 0
        for i, d in enumerate(durations):
            img = np.zeros((64, 160, 3), np.uint8)
            for j in range(INDEX_DIGITS):
                img[:, j * 32 : (j + 1) * 32] = ((i // 4 ** (INDEX_DIGITS - 1 - j)) % 4) * 85
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = pts, tb
            for p in s.encode(f):
                c.mux(p)
            pts += d
        for p in s.encode():
            c.mux(p)
    return path


def test_variable_frame_rate_source(tmp_path):
    """Frames are numbered by presentation order whatever their timing; cut clips keep the source's
    timing, and fps normalisation picks frames by timestamp."""
    durations = [2, 6] * 40  # 80 frames, 0.02 s and 0.06 s alternately: 25 fps on average
    src = synth_vfr(tmp_path / "vfr.mp4", durations)
    times = np.concatenate([[0], np.cumsum(durations)]) / 100  # start time of each source frame (and the end)
    video = video_row(src)
    cfg = ClipsConfig(min_s=0.1)
    r = cut_clips(str(src), video, plan_clips(video, spans((11, 40)), cfg, "d"), tmp_path, cfg)[0]
    out = tmp_path / r["clip_path"]
    assert clip_indices(out) == list(range(11, 40))
    with av.open(str(out)) as c:
        got = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert got == pytest.approx(list(times[11:40] - times[11]))
    # resampled to 25 fps: output frame k shows the source frame whose interval contains k / 25 s
    cfg25 = ClipsConfig(min_s=0.1, fps=25)
    r = cut_clips(str(src), video, plan_clips(video, spans((11, 40)), cfg25, "d"), tmp_path, cfg25)[0]
    ticks = np.concatenate([[0], np.cumsum(durations)])[11:41] - sum(durations[:11])  # integers: no float ties
    expect = [11 + int(np.searchsorted(ticks, 4 * k, side="right")) - 1 for k in range(100) if 4 * k + 2 < ticks[-1]]
    assert clip_indices(tmp_path / r["clip_path"]) == expect
    assert len(set(expect)) < min(len(expect), 29)  # some source frames dropped, some repeated


# ------------------------------------------------------------------------------------------- rounded timestamps

# Matroska and WebM store milliseconds: 30 fps reads 0, 33, 67, 100 ms ...; 29.97 and 23.976 fps round most frames,
# either way. The MP4 twins (time bases 1/15360, 1/30000, 1/24000) have exact timestamps: the same rule must hold.
RATE_SOURCES = {
    "webm_30": ("webm", "libvpx-vp9", Fraction(30)),
    "mkv_29.97": ("matroska", "libx264", Fraction(30000, 1001)),
    "mkv_23.976": ("matroska", "libx264", Fraction(24000, 1001)),
    "mp4_30": ("mp4", "libx264", Fraction(30)),
    "mp4_29.97": ("mp4", "libx264", Fraction(30000, 1001)),
    "mp4_23.976": ("mp4", "libx264", Fraction(24000, 1001)),
}
RATE_FRAMES = 64
VP9_FAST = {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b:v": "0"}


@pytest.fixture(scope="module")
def rate_source(tmp_path_factory):
    """name -> (path, rate, PtsIndex) of a 64-frame indexed video in RATE_SOURCES, built on first use."""
    root = tmp_path_factory.mktemp("rates")
    built = {}

    def get(name):
        if name not in built:
            fmt, codec, rate = RATE_SOURCES[name]
            path = root / f"{name}.{'mkv' if fmt == 'matroska' else fmt}"
            make_indexed_video(
                path, RATE_FRAMES, codec=codec, fmt=fmt, rate=rate, opts=VP9_FAST if "vpx" in codec else None
            )
            built[name] = (path, rate, timeline(path))
        return built[name]

    return get


def test_rounded_sources_are_rounded(rate_source):
    # the cases test what they claim: millisecond stamps off the true frame times in Matroska/WebM, exact in MP4
    for name in RATE_SOURCES:
        path, rate, index = rate_source(name)
        assert len(index) == RATE_FRAMES and clip_indices(path) == list(range(RATE_FRAMES))
        exact = [(p - index.pts[0]) * index.time_base == i / rate for i, p in enumerate(index.pts)]
        if name.startswith("mp4"):
            assert all(exact), name
        else:
            assert index.time_base == Fraction(1, 1000) and exact.count(False) >= RATE_FRAMES // 2, name


# spans starting on differently rounded frames; the last one ends at the source's end (its inferred last interval)
RETIME_SPANS = [(0, 40), (1, 41), (2, 42), (24, RATE_FRAMES)]


@pytest.mark.parametrize("name", list(RATE_SOURCES))
def test_fps_at_the_source_rate_keeps_every_frame_once(rate_source, name, tmp_path):
    """Re-timing to the source's own rate is the identity and to half of it keeps every second frame, whatever the
    container's timestamp rounding (compared exactly, 1 ms stamps repeated one frame and dropped the next)."""
    path, rate, index = rate_source(name)
    video = video_row(path)
    for out_rate, step in ((rate, 1), (rate / 2, 2)):
        cfg = ClipsConfig(min_s=0.1, fps=float(out_rate))
        plans = plan_clips(video, spans(*RETIME_SPANS), cfg, "d", index.times_s())
        rows = cut_clips(str(path), video, plans, tmp_path, cfg, index=index)
        for r, (a, b) in zip(rows, RETIME_SPANS, strict=True):
            assert r["drop_reason"] is None, r["error"]
            assert clip_indices(tmp_path / r["clip_path"]) == list(range(a, b, step)), (float(out_rate), a, b)
            assert r["num_frames"] == len(range(a, b, step))


def test_fps_ids_change_with_the_retime_fix_and_source_timed_ids_do_not():
    # re-timed clips cut before the timestamp tolerance may hold repeated/dropped frames: a resume must not keep
    # them; clips keeping the source timing did not change, so their ids stay
    assert settings_of(ClipsConfig(), "t")["cut_version"] == 2
    assert settings_of(ClipsConfig(fps=24), "t")["cut_version"] == 3
    before_the_fix = "e06202882e3a74da825ca817"
    assert clip_id("hash", 10, 60, settings_of(ClipsConfig(), "transnetv2")) == before_the_fix


@pytest.mark.parametrize("name", ["webm_30", "mkv_29.97", "mkv_23.976"])
def test_spans_and_trims_in_seconds_land_on_rounded_timestamps(rate_source, name, tmp_path):
    """A span given in seconds starts on the frame a player shows at its start and ends after the frame shown just
    before its end, whether the time is a frame's true instant, its millisecond stamp or a quarter frame inside it;
    trimming three frame intervals removes exactly three frames at each edge."""
    path, rate, index = rate_source(name)
    times = index.times_s()
    true = [float(i / rate) for i in range(RATE_FRAMES + 1)]
    given = [
        {"start_s": true[10], "end_s": true[40]},
        {"start_s": times[10], "end_s": times[40]},
        {"start_s": float((10 + Fraction(1, 4)) / rate), "end_s": float((40 - Fraction(1, 4)) / rate)},
        {"start_s": times[3] - 0.0009, "end_s": times[61] + 0.0009},  # stamps written back truncated/rounded up
    ]
    assert [(s["start_frame"], s["end_frame"]) for s in scenes_from_spans(given, times)] == [(10, 40)] * 3 + [(3, 61)]
    video = {**video_row(path), "path": str(path)}
    shots = shots_row({**video, "spans": given[2:3]}, ShotsConfig())
    assert shots["detector"] == "given" and shots["error"] is None
    cfg = ClipsConfig(min_s=0.1)
    shots, rows = cut_video(video, shots, tmp_path, cfg)
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(10, 40)]
    assert clip_indices(tmp_path / rows[0]["clip_path"]) == list(range(10, 40))
    trim = ClipsConfig(min_s=0.1, trim_s=float(3 / rate))
    assert kept(plan_clips(video, spans((10, 40), (0, RATE_FRAMES)), trim, "d", times)) == [(13, 37), (3, 61)]


# ------------------------------------------------------------------------------------------- a scorer's hooks


def test_a_scorer_is_handed_exactly_the_clip_frames_it_asks_for(indexed, tmp_path):
    """cut_clips' ``sample`` / ``on_clip`` (the run's scores.at_cut): the frame count and fps the cutter predicts at a
    clip's first frame are the row's, and the frames it keeps are the clip's own frames k, as its file holds them,
    whether the clip keeps the source timing, is resampled down or up, or comes from a variable-frame-rate source."""
    vfr = synth_vfr(tmp_path / "vfr.mp4", [2, 6] * 40)
    fast = make_indexed_video(tmp_path / "fast.mp4", 130, rate=Fraction(120))  # more than twice the output rate
    cases = [
        (fast, ClipsConfig(fps=24, min_s=0.1), (0, 122)),  # add() emits the 25th frame before finish() would
        (indexed, ClipsConfig(min_s=0.1), (7, 57)),
        (indexed, ClipsConfig(fps=12, min_s=0.1), (100, 146)),
        (indexed, ClipsConfig(fps=50, min_s=0.1), (10, 20)),
        (vfr, ClipsConfig(min_s=0.1), (11, 40)),
        (vfr, ClipsConfig(min_s=0.1, fps=25), (11, 40)),
    ]
    for k, (src, cfg, span) in enumerate(cases):
        video = video_row(src)
        asked, got = [], {}

        def sample(n, fps, asked=asked):
            asked.append((n, fps))
            return [0, n // 2, n - 1]

        def on_clip(row, frames, got=got):
            got.update(row=dict(row), frames=frames)

        out = tmp_path / f"case{k}"
        plans = plan_clips(video, spans(span), cfg, "d")
        r = cut_clips(str(src), video, plans, out, cfg, sample=sample, on_clip=on_clip)[0]
        assert r["drop_reason"] is None and got["row"]["clip_id"] == r["clip_id"]
        n = r["num_frames"]
        assert len(asked) == 1 and asked[0][0] == n and asked[0][1] == pytest.approx(r["fps"], abs=1e-9), (k, asked)
        held = clip_indices(out / r["clip_path"])
        assert sorted(got["frames"]) == [0, n // 2, n - 1]
        assert [decode_index(got["frames"][i]) for i in (0, n // 2, n - 1)] == [held[i] for i in (0, n // 2, n - 1)]
        assert all(f.shape == (r["height"], r["width"], 3) and f.dtype == np.uint8 for f in got["frames"].values())


def test_sweep_temporaries_deletes_only_a_clip_writers_temp_files(tmp_path):
    """Under the writer lock every ``.<id>.<pid>.<random>.tmp.mp4`` in OUT/clips is a killed writer's: gone; a clip,
    another dotfile and a look-alike name stay."""
    from stages.clips import sweep_temporaries

    d = tmp_path / "clips" / "0a"
    d.mkdir(parents=True)
    cid = "0a" + "1" * 22
    stale = d / f".{cid}.123.0badcafe.tmp.mp4"
    keep = [d / f"{cid}.mp4", d / ".keep", d / f".{cid}.tmp.mp4", d / f".{cid}.123.0badcafe.tmp.mp4.part"]
    for f in [stale, *keep]:
        f.write_bytes(b"x")
    assert sweep_temporaries(tmp_path) == 1
    assert not stale.exists() and all(f.exists() for f in keep)
    assert sweep_temporaries(tmp_path / "no-such-out") == 0
