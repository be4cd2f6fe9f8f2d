"""stages.frames on real footage (bikes.mp4) and synthesized videos whose frames encode their own index."""

from __future__ import annotations

import av
import decord
import numpy as np
import pytest

from pipeline.testdata import decode_index, make_indexed_video
from stages.frames import PtsIndex, decord_width_ok, iter_frames, read_frames, sample_indices, video_meta

# ------------------------------------------------------------------------------------------------ helpers


GOP25 = {"x264-params": "keyint=25:min-keyint=25:scenecut=0:bframes=3"}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """300 frames, H.264 with B-frames and a keyframe every 25 frames."""
    return make_indexed_video(tmp_path_factory.mktemp("frames") / "indexed.mp4", 300, opts=GOP25)


# ------------------------------------------------------------------------------------------------ sampling


def test_sample_indices_centres_of_equal_bins():
    assert sample_indices(250, 5) == [25, 75, 125, 175, 225]
    assert sample_indices(100, 4, start=10, end=30) == [12, 17, 22, 27]
    assert sample_indices(10, 1) == [5]
    # more samples than frames: a fixed count, so frames repeat
    assert sample_indices(3, 5) == [0, 0, 1, 2, 2]
    # max_n clamps n; the span is clipped to the video
    assert sample_indices(250, 10, max_n=2) == [62, 187]
    assert sample_indices(50, 2, start=40, end=90) == [42, 47]
    assert sample_indices(50, 3, start=60) == [] and sample_indices(0, 4) == [] and sample_indices(50, 0) == []


def test_sample_indices_at_target_fps():
    # 25 -> 12 fps: output frame k is the source frame covering k / 12 s
    got = sample_indices(50, src_fps=25, target_fps=12)
    assert len(got) == 24 and got[:6] == [0, 2, 4, 6, 8, 10] and got[-1] == 47
    assert got == [int(k * 25 / 12) for k in range(24)]
    # 30000/1001 -> 8 fps with a start offset, capped at the first max_n (the spacing is kept)
    got = sample_indices(300, start=100, src_fps=30000 / 1001, target_fps=8, max_n=4)
    assert got == [100, 103, 107, 111]
    # default: every frame of the span, capped
    assert sample_indices(10, start=3, end=7) == [3, 4, 5, 6]
    assert sample_indices(10, max_n=3) == [0, 1, 2]
    # above the source rate frames repeat
    assert sample_indices(3, src_fps=10, target_fps=20) == [0, 0, 1, 1, 2, 2]
    # the NTSC rates as the probe stores them (floats): their own rate keeps every frame, half of it every second one
    for rate in (30000 / 1001, 24000 / 1001):
        assert sample_indices(500, src_fps=rate, target_fps=rate) == list(range(500))
        assert sample_indices(500, src_fps=rate, target_fps=rate / 2) == list(range(0, 500, 2))
    with pytest.raises(ValueError):
        sample_indices(10, 2, src_fps=25, target_fps=5)
    with pytest.raises(ValueError):
        sample_indices(10, target_fps=5)


# ------------------------------------------------------------------------------------------------ metadata


def test_video_meta_bikes(bikes):
    assert video_meta(bikes) == {"num_frames": 250, "fps": 25.0, "width": 640, "height": 272, "rotation": 0}


# ------------------------------------------------------------------------------------------------ decoding


def test_decord_and_pyav_agree_on_bikes(bikes):
    idx = [200, 3, 31, 30, 29, 249, 100, 0, 76, 75, 3, 137, 136]  # unsorted, a duplicate, both sides of cuts
    ref = read_frames(bikes, idx, backend="pyav")
    dec = read_frames(bikes, idx, backend="decord")
    auto = read_frames(bikes, idx)
    assert ref.shape == (len(idx), 272, 640, 3) and ref.dtype == np.uint8
    assert np.abs(ref.astype(int) - dec).max() <= 1
    assert np.array_equal(auto, ref) or np.abs(auto.astype(int) - ref).max() <= 1
    assert np.array_equal(ref[1], ref[10])  # the duplicate is the same frame
    # the cut at 30 falls between frames 29 and 30, not a frame early or late
    diff = [np.abs(ref[a].astype(int) - ref[b]).mean() for a, b in ((4, 3), (3, 2))]  # 29->30, 30->31
    assert diff[0] > 30 > 10 > diff[1]
    # and PyAV's frame i is the i-th frame of a plain sequential decode
    with av.open(str(bikes)) as c:
        seq = [f.to_ndarray(format="rgb24") for _, f in zip(range(32), c.decode(video=0), strict=False)]
    for k, i in enumerate(idx):
        if i < 32:
            assert np.array_equal(ref[k], seq[i]), i


@pytest.mark.parametrize("backend", ["pyav", "decord", "auto"])
def test_index_is_presentation_order_across_seeks(indexed, backend):
    # B-frames (decode order != presentation order), GOP 25, indices far apart (seeks) and unsorted
    idx = [299, 7, 31, 24, 25, 26, 150, 0, 63, 63, 274]
    frames = read_frames(indexed, idx, backend=backend)
    assert [decode_index(f) for f in frames] == idx


def test_pts_index_of_a_b_frame_stream(indexed):
    with av.open(str(indexed)) as c:
        index = PtsIndex.build(c, c.streams.video[0])
    assert len(index) == 300
    assert index.keyframes == list(range(0, 300, 25))
    assert index.keyframe_before(31) == 25 and index.keyframe_before(25) == 25 and index.keyframe_before(24) == 0


def test_out_of_range_raises(bikes, indexed):
    for backend in ("pyav", "decord", "auto"):
        with pytest.raises(IndexError):
            read_frames(bikes, [10, 250], backend=backend)
    with pytest.raises(IndexError):
        read_frames(indexed, [-1])


def test_vp9_webm_auto_matches_pyav(tmp_path):
    path = make_indexed_video(tmp_path / "v.webm", 60, codec="libvpx-vp9", fmt="webm", opts={"g": "20"})
    meta = video_meta(path)
    assert meta["num_frames"] == 60  # WebM stores no frame count: counted from packets
    idx = [59, 3, 20, 41, 0]
    ref = read_frames(path, idx, backend="pyav")
    assert [decode_index(f) for f in ref] == idx
    assert np.abs(read_frames(path, idx).astype(int) - ref).max() <= 1


def test_av1_falls_back_to_pyav(tmp_path):
    path = make_indexed_video(tmp_path / "a.mp4", 40, codec="libsvtav1", opts={"preset": "12"})
    with pytest.raises(decord.DECORDError):  # why the fallback exists
        decord.VideoReader(str(path))
    idx = [39, 0, 17]
    assert [decode_index(f) for f in read_frames(path, idx)] == idx


def test_decord_corrupt_width_rule():
    bad = [w for w in range(1, 4000) if not decord_width_ok(w)]
    assert bad == [1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 72]


@pytest.mark.parametrize("width,decord_ok", [(48, False), (72, False), (50, True), (96, True)])
def test_decord_width_rule_matches_decord(tmp_path, width, decord_ok):
    """The rule predicts real decord behaviour, and auto returns PyAV's frames either way."""
    path = make_indexed_video(tmp_path / f"w{width}.mp4", 12, w=width, h=32)
    ref = read_frames(path, [0, 5, 11], backend="pyav")
    assert ref.shape == (3, 32, width, 3)
    raw = decord.VideoReader(str(path))[5].asnumpy()
    assert (raw.shape == (32, width, 3) and np.abs(raw.astype(int) - ref[1]).max() <= 1) == decord_ok
    assert decord_width_ok(width) == decord_ok
    assert np.array_equal(read_frames(path, [0, 5, 11]), ref)


def test_size_handling(bikes):
    short = read_frames(bikes, [5, 6], size=136)
    assert short.shape == (2, 136, 320, 3)
    exact = read_frames(bikes, [5], size=(100, 50), backend="pyav")
    assert exact.shape == (1, 50, 100, 3)
    # the resize is of the same frame: downscaled full-size frame ~= resized read
    import cv2

    full = read_frames(bikes, [5], backend="pyav")[0]
    assert np.abs(cv2.resize(full, (320, 136), interpolation=cv2.INTER_AREA).astype(int) - short[0]).mean() < 2
    assert read_frames(bikes, [], size=136).shape == (0, 136, 320, 3)


def test_rotation_is_applied_like_decord(tmp_path):
    path = make_indexed_video(tmp_path / "r.mp4", 10, w=160, h=64, rotation=90)
    meta = video_meta(path)
    assert (meta["width"], meta["height"], meta["rotation"]) == (64, 160, 90)
    ref = read_frames(path, [3, 7], backend="pyav")
    assert ref.shape == (2, 160, 64, 3)
    assert np.abs(read_frames(path, [3, 7], backend="decord").astype(int) - ref).max() <= 1
    # un-rotating gives back the stored picture that encodes the index
    assert [decode_index(np.rot90(f, k=-1)) for f in ref] == [3, 7]


class _CountingContainer:
    """Wraps an input container to count the packets fed to the decoder (one per frame) and seeks."""

    def __init__(self, container):
        self.container, self.decoded, self.seeks = container, 0, 0

    def demux(self, stream):
        for packet in self.container.demux(stream):
            self.decoded += bool(packet.size)
            yield packet

    def seek(self, *args, **kwargs):
        self.seeks += 1
        return self.container.seek(*args, **kwargs)


def test_iter_frames_seeks_over_gaps(transnet_test_video):
    """A 10-frame span near the end of a 5301-frame video decodes about one GOP, not the whole video,
    and the frames are numbered the same as a sequential decode numbers them."""
    with av.open(str(transnet_test_video)) as c:
        index = PtsIndex.build(c, c.streams.video[0])
    assert len(index) == 5301
    with av.open(str(transnet_test_video)) as c:
        counting = _CountingContainer(c)
        got = [
            (i, f.to_ndarray(format="rgb24"))
            for i, f in iter_frames(counting, c.streams.video[0], [(5000, 5010), (5200, 5202)], index)
        ]
    assert [i for i, _ in got] == [*range(5000, 5010), 5200, 5201]
    assert counting.seeks == 2 and counting.decoded < 2 * 200 + 12  # keyframes are at most 197 frames apart
    with av.open(str(transnet_test_video)) as c:
        seq = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in (5000, 5009, 5201)}
    lookup = dict(got)
    assert all(np.array_equal(lookup[i], seq[i]) for i in seq)
    # without an index: sequential, numbered by counting
    with av.open(str(transnet_test_video)) as c:
        counting = _CountingContainer(c)
        assert [i for i, _ in iter_frames(counting, c.streams.video[0], [(40, 43)])] == [40, 41, 42]
        # up to the first frame past the span, plus the packets the decoder holds back (B-frames, threads)
        assert counting.seeks == 0 and 44 <= counting.decoded <= 44 + 16


def test_a_stream_cut_mid_gop_is_numbered_like_the_probe_counts_it(tmp_path):
    """Packets before the first keyframe decode to nothing: frame 0 is the first decodable frame."""
    from pipeline.testdata import make_mixed_corpus
    from stages.probe import probe

    make_mixed_corpus(tmp_path)
    path = tmp_path / "edge" / "cut_mid_gop.ts"
    row = probe({"path": str(path)})
    assert row["error"].startswith("StartsMidGOP")
    assert video_meta(path)["num_frames"] == row["num_frames"]
    last = read_frames(path, [0, row["num_frames"] - 1], backend="pyav")
    assert last.shape[0] == 2
