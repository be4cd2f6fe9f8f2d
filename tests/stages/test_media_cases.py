"""The team's media cases (../shared/media-cases) through probe, every shot detector, planning and cutting.

Every frame of every case shows its own index as grey bars and every shot has its own colour, so a clip's frames
trace back to exact source frames. Times are right within one frame interval of the truth (expect.json).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from stages.clips import ClipsConfig, cut_clips, plan_clips
from stages.frames import read_frames, video_meta
from stages.media import PtsIndex, open_video
from stages.probe import probe
from stages.shots import DETECTORS, ShotsConfig, TransNetV2Detector, check_coverage, detect

CASES = [
    "vfr/vfr_phone.mp4",
    "vfr/vfr_short_shots.mp4",
    "rotation/rotated_portrait.mp4",
    "sar/anamorphic_sar43.mp4",
    "tenbit/tenbit_yuv420p10le.mp4",
    "fullrange/a/fullrange_yuv444p.mp4",
    "fullrange/b/fullrange_yuvj420p.mp4",
    "webm_live/live_noduration.webm",
    "editlist/editlist_preroll.mp4",
    "cover_art/cover_art_first.mp4",
    "mpegts/broadcast.ts",
    "ntsc/ntsc_23976.mp4",
]


def interval(e: dict) -> float:
    """One frame interval of the case: the tolerance for times (the slowest rate of a VFR file)."""
    return 1.0 / 15 if e.get("fps_mean") else 1.0 / e["fps_nominal"]


def upright_size(e: dict) -> tuple[int, int]:
    return (e.get("display_width") or e["width"], e.get("display_height") or e["height"])


def truth_times(e: dict) -> list[list[float]]:
    """Shot times: given for VFR cases, else frames / nominal rate."""
    if "shot_times_s" in e:
        return e["shot_times_s"]
    bounds = [0, *e["cuts"], e["frames"]]
    return [[a / e["fps_nominal"], b / e["fps_nominal"]] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.fixture(scope="module")
def shots_of(media_cases):
    """detector, case -> detect() result, computed once per module (TransNetV2 loaded once)."""
    root, _, _ = media_cases
    cache: dict[tuple[str, str], dict] = {}
    transnet: list[TransNetV2Detector] = []

    def get(detector: str, case: str) -> dict:
        if (detector, case) not in cache:
            if detector == "transnetv2":
                transnet[:] = transnet or [TransNetV2Detector()]
                cache[detector, case] = transnet[0](root / case)
            else:
                cache[detector, case] = detect(root / case, ShotsConfig(detector=detector))
        return cache[detector, case]

    return get


def test_every_case_is_tested(media_cases):
    _, expect, _ = media_cases
    assert sorted(expect) == sorted(CASES)


def test_vendored_builder_is_the_shared_one(media_case_builders):
    vendored, shared = media_case_builders
    if not shared.is_file():
        pytest.skip("no ../shared/media-cases beside this checkout; the vendored copy is used as is")
    assert vendored.read_bytes() == shared.read_bytes(), (
        "tests/media/make_media_cases.py differs from ../shared/media-cases: copy the shared one over"
    )


@pytest.mark.parametrize("case", CASES)
def test_probe_matches_truth(media_cases, case):
    root, expect, _ = media_cases
    e = expect[case]
    row = probe({"path": str(root / case)})
    assert row["status"] == "ok" and row["error"] is None, row["error"]
    assert row["num_frames"] == e["frames"]
    assert abs(row["duration_s"] - e["duration_s"]) <= interval(e)
    if e.get("fps_mean"):
        assert row["fps_variable"] is True
        assert row["fps"] == pytest.approx(e["fps_mean"], rel=2e-3)
        assert row["fps_nominal"] == pytest.approx(e["fps_nominal"])
    else:
        assert row["fps_variable"] is False
        assert row["fps"] == pytest.approx(e["fps_nominal"], rel=1e-6)
    assert (row["display_width"], row["display_height"]) == upright_size(e)
    assert (row["width"], row["height"]) == (
        e.get("stored_width", e.get("width")),
        e.get("stored_height", e.get("height")),
    )
    assert row["sar"] == e.get("sar")
    assert row["rotation"] == e.get("rotation_cw", 0)
    assert row["video_stream"] == e.get("video_stream_index", 0)
    assert row["start_time_s"] == pytest.approx(e.get("start_time_s", 0.0), abs=1e-6)
    assert row["color_range"] == ("pc" if e.get("color_range") == "pc" else row["color_range"])
    if e.get("color_range") == "pc":
        assert row["color_range"] == "pc"
    else:
        assert row["color_range"] in (None, "tv")
    if "pix_fmt" in e:
        assert row["pix_fmt"].replace("yuvj", "yuv") == e["pix_fmt"].replace("yuvj", "yuv")
    assert row["hdr"] is None
    # every other reader agrees with the probe on the frames
    meta = video_meta(root / case)
    assert meta["num_frames"] == e["frames"] and (meta["width"], meta["height"]) == upright_size(e)


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("case", CASES)
def test_detectors_find_the_cuts_at_true_times(media_cases, case, detector, shots_of):
    _, expect, _ = media_cases
    e = expect[case]
    r = shots_of(detector, case)
    assert r["frames"] == e["frames"]
    check_coverage(r["scenes"], e["frames"])
    assert [s["start_frame"] for s in r["scenes"][1:]] == e["cuts"]
    for s, (t0, t1) in zip(r["scenes"], truth_times(e), strict=True):
        assert abs(s["start_s"] - t0) <= interval(e) and abs(s["end_s"] - t1) <= interval(e), (s, t0, t1)
    assert abs(r["duration_s"] - e["duration_s"]) <= interval(e)


def _cut(path, cfg, scenes, detector, out):
    row = probe({"path": str(path)})
    container, stream = open_video(path)
    with container:
        index = PtsIndex.build(container, stream)
    plans = plan_clips(row, scenes, cfg, detector, index.times_s())
    return row, cut_clips(str(path), row, plans, out, cfg, index=index)


@pytest.mark.parametrize("case", CASES)
def test_clips_hold_exactly_their_source_frames(media_cases, case, shots_of, tmp_path):
    """Cut what every detector found: every clip's frames carry the bars of exactly [start, end) (shifted by the
    hidden pre-roll of the edit-list case), one shot colour, the display size, and the true duration. Detectors
    that found the same spans give the same clips, so each distinct shot list is cut once."""
    root, expect, mod = media_cases
    e = expect[case]
    path = root / case
    cfg = ClipsConfig(min_s=1.0)
    distinct = {}
    for detector in DETECTORS:
        scenes = shots_of(detector, case)["scenes"]
        distinct.setdefault(tuple((s["start_frame"], s["end_frame"]) for s in scenes), (detector, scenes))
    for detector, scenes in distinct.values():
        _check_clips(path, e, mod, cfg, scenes, detector, tmp_path / detector)


def _check_clips(path, e, mod, cfg, scenes, detector, tmp_path):
    _, rows = _cut(path, cfg, scenes, detector, tmp_path)
    kept = [r for r in rows if r["drop_reason"] is None]
    assert [(r["start_frame"], r["end_frame"]) for r in kept] == list(
        zip([0, *e["cuts"]], [*e["cuts"], e["frames"]], strict=True)
    )
    offset = e.get("first_source_index", 0)
    colours = []
    for r, (t0, t1) in zip(kept, truth_times(e), strict=True):
        assert r["error"] is None and r["clip_path"], r["error"]
        n = r["end_frame"] - r["start_frame"]
        assert r["num_frames"] == n
        frames = read_frames(tmp_path / r["clip_path"], list(range(n)))
        assert [mod.read_bars(f) for f in frames] == list(range(r["start_frame"] + offset, r["end_frame"] + offset))
        shots = {mod.shot_of(f) for f in frames}
        assert len(shots) == 1, f"clip {r['start_frame']}..{r['end_frame']} mixes shots {shots}"
        colours.append(shots.pop())
        assert (r["width"], r["height"]) == upright_size(e)
        assert abs(r["start_s"] - t0) <= interval(e) and abs(r["end_s"] - t1) <= interval(e)
        assert abs(r["duration_s"] - (t1 - t0)) <= interval(e)
        # the file says the same: its length is the clip's duration, its mean rate frames / duration
        with av.open(str(tmp_path / r["clip_path"])) as c:
            s = c.streams.video[0]
            assert float(s.duration * s.time_base) == pytest.approx(r["duration_s"], abs=1e-3)
        assert r["fps"] * r["duration_s"] == pytest.approx(n, abs=1e-6)
    assert all(a != b for a, b in zip(colours, colours[1:], strict=False))


def test_vfr_min_s_rule_runs_on_true_times(media_cases, shots_of, tmp_path):
    root, expect, _ = media_cases
    case = "vfr/vfr_short_shots.mp4"
    found = shots_of("hybrid", case)
    _, rows = _cut(root / case, ClipsConfig(min_s=2.0), found["scenes"], "hybrid", tmp_path)
    assert [r["drop_reason"] for r in rows] == ["duration_short", "duration_short", None, None]
    assert [round(r["duration_s"], 2) for r in rows] == expect[case]["true_shot_s"]


def test_vfr_fps_normalised_clip_states_its_own_frames_and_duration(media_cases, shots_of, tmp_path):
    root, _, _ = media_cases
    found = shots_of("hybrid", "vfr/vfr_phone.mp4")
    cfg = ClipsConfig(min_s=1.0, fps=10)
    _, rows = _cut(root / "vfr/vfr_phone.mp4", cfg, found["scenes"], "hybrid", tmp_path)
    # shots of 4.0 s and 3.0 s become 40 and 30 frames at 10 fps, and the files last exactly that long
    assert [(r["num_frames"], r["fps"], round(r["duration_s"], 6)) for r in rows] == [(40, 10.0, 4.0), (30, 10.0, 3.0)]
    for r in rows:
        with av.open(str(tmp_path / r["clip_path"])) as c:
            assert float(c.streams.video[0].duration * c.streams.video[0].time_base) == pytest.approx(r["duration_s"])
    assert [(r["start_s"], round(r["end_s"], 3)) for r in rows] == [(0.0, 4.0), (4.0, 7.002)]  # ~1 ms jitter


@pytest.mark.parametrize("rate", [30, 15, 10])
def test_vfr_phone_retimed_by_its_frame_times_despite_jitter(media_cases, rate, tmp_path):
    """Output frame k shows the source frame on screen at k / rate by the true frame times (1/30 s apart, then 1/15 s),
    although the stamps carry up to 1 ms of jitter either way: at 30 fps the 30 fps part is kept whole and the 15 fps
    part doubled, at 15 fps the reverse; compared exactly, late stamps repeated one frame and dropped the next."""
    root, expect, mod = media_cases
    case = "vfr/vfr_phone.mp4"
    cut = expect[case]["cuts"][0]
    nominal = [Fraction(i, 30) if i < 60 else 2 + Fraction(i - 60, 15) for i in range(expect[case]["frames"])]
    cfg = ClipsConfig(min_s=1.0, fps=rate)
    scenes = [{"start_frame": 0, "end_frame": cut}, {"start_frame": cut, "end_frame": expect[case]["frames"]}]
    _, rows = _cut(root / case, cfg, scenes, "given", tmp_path)
    for r in rows:
        a, b = r["start_frame"], r["end_frame"]
        end = nominal[b] if b < len(nominal) else Fraction(7)
        count = round((end - nominal[a]) * rate)
        want = [max(i for i in range(a, b) if nominal[i] <= nominal[a] + Fraction(k, rate)) for k in range(count)]
        frames = read_frames(tmp_path / r["clip_path"], list(range(r["num_frames"])))
        assert [mod.read_bars(f) for f in frames] == want


def test_anamorphic_disc_is_round_in_clips(media_cases, tmp_path):
    root, _, _ = media_cases
    case = root / "sar/anamorphic_sar43.mp4"
    _, rows = _cut(case, ClipsConfig(min_s=1.0), detect(case)["scenes"], "hybrid", tmp_path)
    for r in rows:
        f = read_frames(tmp_path / r["clip_path"], [10])[0]
        assert f.shape == (180, 320, 3)
        disc = (f[..., 0] > 220) & (f[..., 1] > 220) & (f[..., 2] < 130)
        ys, xs = np.nonzero(disc)
        w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        assert 0.95 <= w / h <= 1.05, (w, h)  # a circle stays a circle (squashed it measured 37x50)


@pytest.mark.parametrize("case", ["fullrange/a/fullrange_yuv444p.mp4", "fullrange/b/fullrange_yuvj420p.mp4"])
def test_full_range_ramp_survives_to_clip_pixels(media_cases, case, tmp_path):
    import av

    root, _, _ = media_cases
    path = root / case
    x = np.arange(320)
    ramp = x * 255 / 319
    # the source as every reader sees it, and the clip
    src = read_frames(path, [10, 70])
    _, rows = _cut(path, ClipsConfig(min_s=1.0), detect(path)["scenes"], "hybrid", tmp_path)
    clip0 = read_frames(tmp_path / rows[0]["clip_path"], [10])[0]
    clip1 = read_frames(tmp_path / rows[1]["clip_path"], [10])[0]
    for frame, truth in ((src[0], ramp), (src[1], ramp[::-1]), (clip0, ramp), (clip1, ramp[::-1])):
        luma = frame[70:170].astype(float).mean(axis=0)  # rows below h/3: grey ramp, R = G = B = value
        assert np.abs(luma - truth[:, None]).max() <= 3.0
    with av.open(str(tmp_path / rows[0]["clip_path"])) as c:
        cc = c.streams.video[0].codec_context
        # limited range, tagged with the matrix it was converted with (SD, untagged source: BT.601 / SMPTE 170M)
        assert (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 6, 6, 6)


# ------------------------------------------------------------------------------------ the same kinds, other forms
# Our own files of the same kinds in other containers and codecs, with their truth, built with the shared builder's
# encoder and frame painter (bars + shot colours).


def _vfr(mod, d, fmt, ext, codec, tb):
    n, cut = 135, 90
    k = mod.kinds([cut])
    pts, t = [], 0
    step30, step15 = round(1 / (30 * tb)), round(1 / (15 * tb))
    for i in range(n):
        pts.append(t)
        t += step30 if i < 60 else step15
    path = d / f"vfr.{ext}"
    mod.encode(str(path), [mod.frame(k, i, 320, 180) for i in range(n)], rate=30, tb=tb, pts=pts, fmt=fmt, codec=codec)
    return path, dict(
        frames=n,
        cuts=[cut],
        fps_nominal=30,
        fps_mean=n / 7.0,
        duration_s=7.0,
        width=320,
        height=180,
        shot_times_s=[[0.0, 4.0], [4.0, 7.0]],
    )


def _sar(mod, d, fmt, ext, codec, pix="yuv420p"):
    import cv2

    n, cut = 48, 24
    k = mod.kinds([cut])
    yy, xx = np.mgrid[0:180, 0:320]
    disc = (xx - 200) ** 2 + (yy - 105) ** 2 <= 50**2
    imgs = []
    for i in range(n):
        img = mod.frame(k, i, 320, 180)
        img[disc] = (250, 250, 60)
        imgs.append(cv2.resize(img, (240, 180), interpolation=cv2.INTER_AREA))
    path = d / f"sar.{ext}"
    mod.encode(str(path), imgs, rate=24, sar=Fraction(4, 3), fmt=fmt, codec=codec, pix=pix)
    return path, dict(
        frames=n,
        cuts=[cut],
        fps_nominal=24,
        duration_s=2.0,
        width=240,
        height=180,
        display_width=320,
        display_height=180,
        sar="4:3",
    )


def _fullrange(mod, d, fmt, ext, codec, pix):
    import av

    n, cut = 48, 24
    frames = mod._ramp_frames(n, cut, 320, 180, "yuvj420p")
    if pix == "yuv420p":  # the same full-range samples in a non-"j" format, tagged pc (VP9/HEVC style)
        relabelled = []
        for f in frames:
            g = av.VideoFrame.from_ndarray(f.to_ndarray(), format="yuv420p")
            g.color_range = 2
            relabelled.append(g)
        frames = relabelled
    path = d / f"fullrange.{ext}"
    opts = {"qmin": "1", "qmax": "2"} if codec == "mjpeg" else None  # near-lossless: the ramp is the truth
    mod.encode(str(path), frames, rate=24, fmt=fmt, codec=codec, pix=pix, color_range=2, opts=opts)
    return path, dict(frames=n, cuts=[cut], fps_nominal=24, duration_s=2.0, width=320, height=180, color_range="pc")


def _editlist_mov(mod, d):
    import av

    n, cut, start = 72, 48, 30
    k = mod.kinds([cut])
    src = d / "src.mov"
    mod.encode(
        str(src),
        [mod.frame(k, i, 320, 180) for i in range(n)],
        rate=24,
        gop=24,
        fmt="mov",
        opts={"preset": "veryfast", "bf": "3"},
    )
    path = d / "editlist.mov"
    with av.open(str(src)) as ic:
        s = ic.streams.video[0]
        pk = [p for p in ic.demux(s) if p.size]
        order = sorted(p.pts for p in pk)
        start_pts, key_pts = order[start], order[24]
        kpos = next(i for i, p in enumerate(pk) if p.pts == key_pts)
        with av.open(str(path), "w", format="mov") as oc:
            o = oc.add_stream_from_template(s)
            for p in pk[kpos:]:
                p.pts -= start_pts
                p.dts -= start_pts
                p.stream = o
                oc.mux(p)
    src.unlink()
    return path, dict(
        frames=n - start,
        cuts=[cut - start],
        fps_nominal=24,
        duration_s=(n - start) / 24,
        width=320,
        height=180,
        first_source_index=start,
    )


def _late_start_mkv(mod, d):
    n, cut = 48, 30
    k = mod.kinds([cut])
    path = d / "late_start.mkv"
    mod.encode(
        str(path), [mod.frame(k, i, 320, 180) for i in range(n)], rate=24, fmt="matroska", t0_s=3600, audio_s=2.0
    )
    return path, dict(frames=n, cuts=[cut], fps_nominal=24, duration_s=2.0, width=320, height=180)


OWN_CASES = {
    "vfr_matroska_ms": lambda mod, d: _vfr(mod, d, "matroska", "mkv", "libx264", Fraction(1, 1000)),
    "vfr_mov_hevc": lambda mod, d: _vfr(mod, d, "mov", "mov", "libx265", Fraction(1, 90000)),
    "sar_avi_mpeg4": lambda mod, d: _sar(mod, d, "avi", "avi", "mpeg4"),
    "sar_mkv_h264": lambda mod, d: _sar(mod, d, "matroska", "mkv", "libx264"),
    "fullrange_avi_mjpeg": lambda mod, d: _fullrange(mod, d, "avi", "avi", "mjpeg", "yuvj420p"),
    "fullrange_webm_vp9": lambda mod, d: _fullrange(mod, d, "webm", "webm", "libvpx-vp9", "yuv420p"),
    "editlist_mov": _editlist_mov,
    "late_start_mkv": _late_start_mkv,
}


@pytest.mark.parametrize("name", sorted(OWN_CASES))
def test_same_kinds_in_other_containers_and_codecs(media_cases, name, tmp_path):
    """Probe, hybrid shots and cutting on our own files of each kind: true frame counts and times, cuts, square
    pixels at the display size, full range decoded right, bars traced through the clips."""
    _, _, mod = media_cases
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    path, e = OWN_CASES[name](mod, src_dir)
    row = probe({"path": str(path)})
    assert row["status"] == "ok" and row["error"] is None, row["error"]
    assert row["num_frames"] == e["frames"]
    assert abs(row["duration_s"] - e["duration_s"]) <= interval(e)
    assert row["fps_variable"] is bool(e.get("fps_mean"))
    assert (row["display_width"], row["display_height"]) == upright_size(e)
    assert row["sar"] == e.get("sar")
    assert row["start_time_s"] >= 0
    if e.get("color_range"):
        assert row["color_range"] == "pc"
    found = detect(path)
    assert found["frames"] == e["frames"] and [s["start_frame"] for s in found["scenes"][1:]] == e["cuts"]
    for s, (t0, t1) in zip(found["scenes"], truth_times(e), strict=True):
        assert abs(s["start_s"] - t0) <= interval(e) and abs(s["end_s"] - t1) <= interval(e)
    _check_clips(path, e, mod, ClipsConfig(min_s=0.5), found["scenes"], "hybrid", tmp_path / "out")
    if e.get("color_range"):
        x = np.arange(320) * 255 / 319
        for frame, truth in zip(read_frames(path, [5, 30]), (x, x[::-1]), strict=True):
            assert np.abs(frame[70:170].astype(float).mean(axis=0) - truth[:, None]).max() <= 3.0


def test_hdr_pq_is_kept_with_its_tags_or_dropped(media_cases, tmp_path):
    """A 10-bit PQ / BT.2020 source: the videos row says hdr = pq; its clips stay 10-bit with the source's tags;
    ingest.drop_hdr excludes it with a row that says why."""
    import av

    from stages.probe import exclude_hdr

    _, _, mod = media_cases
    n, cut = 48, 24
    k = mod.kinds([cut])
    path = tmp_path / "hdr_pq.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p10le"
        cc = s.codec_context
        cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 1, 9, 9, 16
        for i in range(n):
            f = av.VideoFrame.from_ndarray(mod.frame(k, i, 320, 180), format="rgb24")
            f = f.reformat(format="yuv420p10le", dst_colorspace=9, dst_color_range=1)
            f.color_range, f.colorspace, f.color_primaries, f.color_trc = 1, 9, 9, 16
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    row = probe({"path": str(path)})
    assert (row["hdr"], row["color_transfer"], row["color_primaries"], row["color_space"]) == (
        "pq",
        "smpte2084",
        "bt2020",
        "bt2020nc",
    )
    _, rows = _cut(path, ClipsConfig(min_s=0.5), detect(path)["scenes"], "hybrid", tmp_path)
    with av.open(str(tmp_path / rows[0]["clip_path"])) as c:
        cc = c.streams.video[0].codec_context
        assert cc.pix_fmt == "yuv420p10le"
        assert (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 9, 9, 16)
    dropped = exclude_hdr(dict(row))
    assert (dropped["status"], dropped["error_type"]) == ("error", "HDRExcluded") and "drop_hdr" in dropped["error"]
    assert exclude_hdr(probe({"path": str(path.parent / "missing.mp4")}))["error_type"] == "FileNotFoundError"
