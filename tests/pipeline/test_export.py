"""clipforge export: every format read back by the library its users read it with (webdataset, datasets, pandas),
from a real store of real H.264 clips cut from the shipped footage."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from pipeline import store
from pipeline.captions import CAPTION_SOURCES
from pipeline.export import export
from pipeline.schema import CLIPS, VIDEOS


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A store of 4 real clips with dense and short captions and scores; one clip has no short caption, one was
    dropped (so it must never be exported)."""
    from training.demo import make_demo_clips

    root = tmp_path_factory.mktemp("export")
    rows = make_demo_clips(root, names=["bikes_s0", "bikes_s1", "bikes_s2", "carphone"])
    clips = []
    for r in rows:
        clip = {k: v for k, v in r.items() if k in CLIPS.names}
        clips.append({**clip, "video_id": "v_" + r["clip_id"].split("_")[0], "start_s": 0.0, "end_s": r["duration_s"],
                      "start_frame": 100, "end_frame": 100 + r["num_frames"]})  # fmt: skip
    clips[-1]["drop_reason"] = "quality_dark"  # carphone: rejected
    with store.ShardWriter(root, "clips", CLIPS) as w:
        w.add_rows(clips)
    with store.ShardWriter(root, "videos", VIDEOS) as w:
        w.add_rows([{"video_id": "v_bikes", "path": "/footage/bikes.mp4", "status": "ok"}])
    caps = [{"clip_id": r["clip_id"], "caption_dense": r["caption_dense"], "caption_short": r["caption_short"]}
            for r in rows]  # fmt: skip
    caps[1]["caption_short"] = None  # bikes_s1: no short caption
    with store.ShardWriter(root, "captions") as w:
        w.add_rows([{**c, "written_at": 1.0} for c in caps])
    with store.ShardWriter(root, "scores") as w:
        w.add_rows([{"clip_id": r["clip_id"], "motion": 0.1 * (i + 1), "written_at": 1.0} for i, r in enumerate(rows)])
    # camera scores for two clips (stages/camera.py tags them): bikes_s0 pans left and zooms in, bikes_s1 holds still
    camera = {"bikes_s0": (-0.05, 0.0, 0.02), "bikes_s1": (0.001, -0.002, 0.0)}
    with store.ShardWriter(root, "scores") as w:
        w.add_rows([{"clip_id": cid, "motion": 0.1, "camera_pan": p, "camera_tilt": t, "camera_zoom": z,
                     "written_at": 2.0} for cid, (p, t, z) in camera.items()])  # fmt: skip
    store.record_version(root, "run")
    return root, {r["clip_id"]: r for r in rows}


KEPT = ["bikes_s0", "bikes_s1", "bikes_s2"]


def test_webdataset_shards_read_back_with_webdataset(out, tmp_path):
    import webdataset as wds

    root, rows = out
    manifest = export(root, "webdataset", tmp_path / "wds", caption="dense", shard_clips=2)
    assert manifest["files"] == ["shard-000000.tar", "shard-000001.tar"]
    samples = list(wds.WebDataset(str(tmp_path / "wds" / "shard-{000000..000001}.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == KEPT
    for s in samples:
        cid = s["__key__"]
        assert s["mp4"] == (root / rows[cid]["clip_path"]).read_bytes()  # the clip file, whole
        assert s["txt"].decode() == rows[cid]["caption_dense"]
        meta = json.loads(s["json"])
        assert meta["width"] == rows[cid]["width"] and meta["num_frames"] == rows[cid]["num_frames"]
        assert meta["caption"] == rows[cid]["caption_dense"] and "phash" not in meta
        assert meta["caption_source"] == "dense"
    assert manifest["counts"] == {"selected": 3, "written": 3, "left_out": {}}
    assert manifest["out_version"] == 1 and manifest["tables"]["clips"] == 0


def test_hf_dataset_opens_with_load_dataset(out, tmp_path):
    import datasets

    root, rows = out
    export(root, "hf", tmp_path / "hf", caption="dense")
    ds = datasets.load_dataset(str(tmp_path / "hf"), split="train")
    assert ds.num_rows == 3 and ds["clip_id"] == KEPT
    first = ds[0]
    assert first["video"] == (root / rows["bikes_s0"]["clip_path"]).read_bytes()
    assert first["caption"] == rows["bikes_s0"]["caption_dense"] and first["motion"] == pytest.approx(0.1)
    mixed = export(root, "hf", tmp_path / "mix", caption="mix", seed=3)
    assert mixed["counts"]["written"] == 3
    for r in datasets.load_dataset(str(tmp_path / "mix"), split="train"):
        assert r["caption"] == rows[r["clip_id"]][CAPTION_SOURCES[r["caption_source"]]]  # the source says which


def test_open_sora_csv_reads_with_pandas(out, tmp_path):
    import pandas as pd

    root, rows = out
    export(root, "csv", tmp_path / "csv", caption="short")
    df = pd.read_csv(tmp_path / "csv" / "meta.csv")
    assert list(df.columns[:10]) == [
        "path", "text", "num_frames", "height", "width", "aspect_ratio", "resolution", "fps", "aes", "flow"
    ]  # fmt: skip
    assert list(df["clip_id"]) == ["bikes_s0", "bikes_s2"]  # bikes_s1 has no short caption: left out
    for _, r in df.iterrows():
        assert Path(r["path"]).is_file() and r["num_frames"] == rows[r["clip_id"]]["num_frames"]
        assert r["resolution"] == r["height"] * r["width"] == 160 * 68  # Open-Sora's meta.py: pixels
        assert r["text"] == rows[r["clip_id"]]["caption_short"] and r["source"] == "/footage/bikes.mp4"
        assert r["caption_source"] == "short"
    manifest = json.loads((tmp_path / "csv" / "manifest.json").read_text())
    assert manifest["counts"]["left_out"] == {"no_short_caption": 1}


def test_folder_layout_and_the_cli(out, tmp_path):
    root, rows = out
    cmd = [sys.executable, "-m", "pipeline.cli", "export", str(root), "--format", "folder", "--dest"]
    r = subprocess.run([*cmd, str(tmp_path / "f"), "--where", "clip_id <> 'bikes_s2'", "--caption", "mix"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "exported 2 of 2 selected clips" in r.stdout
    assert sorted(p.name for p in (tmp_path / "f").glob("*.mp4")) == ["bikes_s0.mp4", "bikes_s1.mp4"]
    for cid in ("bikes_s0", "bikes_s1"):
        text = (tmp_path / "f" / f"{cid}.txt").read_text().strip()
        assert text in (rows[cid]["caption_dense"], rows[cid]["caption_short"])
        assert (tmp_path / "f" / f"{cid}.mp4").read_bytes() == (root / rows[cid]["clip_path"]).read_bytes()
    # metadata.jsonl: file_name (videofolder, finetrainers), video_path + caption (musubi-tuner), the clip's properties
    meta = [json.loads(line) for line in (tmp_path / "f" / "metadata.jsonl").open()]
    assert [m["file_name"] for m in meta] == [m["video_path"] for m in meta] == ["bikes_s0.mp4", "bikes_s1.mp4"]
    for m in meta:
        assert m["caption"] == (tmp_path / "f" / f"{m['clip_id']}.txt").read_text().strip()
        assert (m["num_frames"], m["width"], m["height"]) == (rows[m["clip_id"]]["num_frames"], 160, 68)
    again = subprocess.run([*cmd, str(tmp_path / "g"), "--caption", "mix"], capture_output=True, text=True)
    assert again.returncode == 0  # the mix draw is per clip and seeded: the same caption every time
    assert (tmp_path / "g" / "bikes_s0.txt").read_text() == (tmp_path / "f" / "bikes_s0.txt").read_text()
    bad = subprocess.run([*cmd, str(tmp_path / "h"), "--where", "no_such_column > 1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no_such_column" in bad.stderr


def test_camera_tags_in_the_view_and_appended_to_captions(out, tmp_path):
    """The clips view derives camera_tags from the camera scores; --camera-tags says the move after each caption."""
    root, rows = out
    tags = {
        r["clip_id"]: r["camera_tags"] for r in store.query(root, "SELECT clip_id, camera_tags FROM kept").to_pylist()
    }
    assert tags == {"bikes_s0": ["pan left", "zoom in"], "bikes_s1": ["static"], "bikes_s2": None}
    manifest = export(root, "folder", tmp_path / "f", caption="dense", camera_tags=True)
    assert manifest["camera_tags"] is True
    text = {cid: (tmp_path / "f" / f"{cid}.txt").read_text().strip() for cid in tags}
    # a caption without a full stop gets one before the camera sentence
    stop = {c: "" if rows[c]["caption_dense"].endswith(".") else "." for c in ("bikes_s0", "bikes_s1")}
    assert (
        text["bikes_s0"]
        == rows["bikes_s0"]["caption_dense"] + stop["bikes_s0"] + " The camera pans left and zooms in."
    )
    assert text["bikes_s1"] == rows["bikes_s1"]["caption_dense"] + stop["bikes_s1"] + " The camera is static."
    assert text["bikes_s2"] == rows["bikes_s2"]["caption_dense"]  # no camera scores: nothing said


def test_where_existing_dest_nothing_to_export_and_bad_sizes(out, tmp_path):
    """--where sees the kept view's columns (duration_s, width ... are not ambiguous with the source's); a dest that
    holds files is refused unless --overwrite (which empties it: no stale shard is read back); an export with nothing
    to write says why and writes no data file; --shard-clips below 1 is refused."""
    import webdataset as wds

    root, rows = out
    m = export(root, "webdataset", tmp_path / "w", where="duration_s > 0 AND width > 0", shard_clips=1)
    assert m["counts"]["written"] == 3 and len(m["files"]) == 3
    with pytest.raises(ValueError, match="not an empty directory"):
        export(root, "webdataset", tmp_path / "w", where="clip_id = 'bikes_s0'")
    m = export(root, "webdataset", tmp_path / "w", where="clip_id = 'bikes_s0'", overwrite=True)
    assert m["files"] == ["shard-000000.tar"]
    assert [s["__key__"] for s in wds.WebDataset(str(tmp_path / "w" / "shard-000000.tar"), shardshuffle=False)] == [
        "bikes_s0"
    ]
    none = export(root, "hf", tmp_path / "none", caption="original")  # no clip has an original caption
    assert none["counts"] == {"selected": 3, "written": 0, "left_out": {"no_original_caption": 3}}
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["manifest.json"]
    with pytest.raises(ValueError, match="at least 1"):
        export(root, "hf", tmp_path / "zero", shard_clips=0)
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "export", str(root), "--format", "csv", "--dest", str(tmp_path / "c"),
         "--caption", "original"], capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 1 and "nothing to export" in r.stderr


# ------------------------------------------------------------------------------------------ normalisations


def _read_back(data) -> dict:
    """A clip file (path or bytes) decoded with PyAV: frame count, mean rate, size, SAR, colour tags, streams."""
    import io

    import av

    with av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        cc = s.codec_context
        return {
            "frames": len(frames),
            "rate": s.average_rate,
            "size": (cc.width, cc.height),
            "sar": s.sample_aspect_ratio,
            "colour": (cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc),
            "audio": len(c.streams.audio),
            "pixels": frames,
        }


def _4k1(n: int) -> int:
    return (n - 1) // 4 * 4 + 1


def test_folder_normalised_to_fps_4k1_and_buckets(out, tmp_path):
    """--fps 16 --frames 4k+1 --buckets: every written clip read back with PyAV has round(duration * 16) frames cut to
    4k+1, a mean rate of exactly 16, the bucket's size, square pixels, the source's colour tags and no audio; a clip
    left with fewer than --min-frames is counted as too_short; metadata.jsonl (read by 🤗 videofolder) and the
    manifest say what was written."""
    import datasets

    root, rows = out
    # 80x192 is the ratio nearest the clips' 160x68 (2.35) but larger than them: the next nearest ratio that fits wins
    (tmp_path / "b.yaml").write_text(
        "buckets: [{frames: 1, height: 80, width: 192}, {frames: 1, height: 64, width: 112},"
        " {frames: 1, height: 48, width: 64}, {frames: 1, height: 64, width: 64}]\n"
    )
    m = export(root, "folder", tmp_path / "f", fps=16, frames="4k+1", min_frames=21, buckets=tmp_path / "b.yaml")
    expect = {cid: _4k1(round(rows[cid]["num_frames"] / 25 * 16)) for cid in KEPT}
    assert expect == {"bikes_s0": 17, "bikes_s1": 29, "bikes_s2": 37}  # bikes_s0 (1.2 s): 17 frames < 21
    assert m["counts"] == {"selected": 3, "written": 2, "left_out": {"too_short": 1}}
    assert m["normalise"]["fps"] == "16" and m["normalise"]["frames"] == "4k+1" and m["normalise"]["keep"] == "middle"
    assert m["normalise"]["per_bucket"] == {"64x112": 2} and m["normalise"]["clips"] == {"encoded": 2, "copied": 0}
    assert "48x64" in m["normalise"]["buckets"] and m["normalise"]["errors"] == []
    source_colour = _read_back(root / rows["bikes_s1"]["clip_path"])["colour"]
    meta = {json.loads(line)["clip_id"]: json.loads(line) for line in (tmp_path / "f" / "metadata.jsonl").open()}
    assert sorted(meta) == ["bikes_s1", "bikes_s2"] and not (tmp_path / "f" / "bikes_s0.mp4").exists()
    for cid in ("bikes_s1", "bikes_s2"):
        got = _read_back(tmp_path / "f" / f"{cid}.mp4")
        assert got["frames"] == expect[cid] and (got["frames"] - 1) % 4 == 0
        assert got["rate"] == 16 and got["size"] == (112, 64) and got["sar"] in (None, 0, 1)
        assert got["colour"] == source_colour and got["audio"] == 0
        r = meta[cid]
        assert (r["num_frames"], r["fps"], r["width"], r["height"]) == (got["frames"], 16.0, 112, 64)
        assert r["bucket"] == "64x112" and r["file_name"] == r["video_path"] == f"{cid}.mp4"
        assert r["caption"] == rows[cid]["caption_dense"] == (tmp_path / "f" / f"{cid}.txt").read_text().strip()
        assert r["duration_s"] == pytest.approx(expect[cid] / 16)
        # the middle is kept: the written span is centred in the clip's
        assert r["start_s"] + r["end_s"] == pytest.approx(rows[cid]["duration_s"], abs=2 / 16)
    ds = datasets.load_dataset("videofolder", data_dir=str(tmp_path / "f"), split="train", cache_dir=str(tmp_path))
    assert sorted(ds["clip_id"]) == ["bikes_s1", "bikes_s2"] and set(ds["num_frames"]) == {29, 37}


def test_webdataset_and_hf_share_the_normalisation(out, tmp_path):
    """--frames 4k+1 --max-frames 33 without --fps keeps the clips' own timing: the middle 4k+1 frames, at most 33;
    the webdataset json and the hf columns hold the written clip's frames, rate, size and span."""
    import datasets
    import webdataset as wds

    root, rows = out
    export(root, "webdataset", tmp_path / "w", frames="4k+1", max_frames=33)
    expect = {cid: min(33, _4k1(rows[cid]["num_frames"])) for cid in KEPT}
    assert expect == {"bikes_s0": 29, "bikes_s1": 33, "bikes_s2": 33}
    for s in wds.WebDataset(str(tmp_path / "w" / "shard-000000.tar"), shardshuffle=False):
        cid, meta = s["__key__"], json.loads(s["json"])
        got = _read_back(s["mp4"])
        assert got["frames"] == meta["num_frames"] == expect[cid] and got["rate"] == 25 and meta["fps"] == 25.0
        assert got["size"] == (meta["width"], meta["height"]) == (160, 68)
        skipped = (rows[cid]["num_frames"] - expect[cid]) // 2  # frames cut from the start (the middle is kept)
        assert meta["start_s"] == pytest.approx(skipped / 25) and meta["duration_s"] == pytest.approx(expect[cid] / 25)
        # the source frames the written clip shows (the stored clip starts at source frame 100)
        assert (meta["start_frame"], meta["end_frame"]) == (100 + skipped, 100 + skipped + expect[cid])
    ntsc = Fraction(30000, 1001)  # 25 -> 29.97 frames/s: frames repeat, none is blended
    m = export(root, "hf", tmp_path / "hf-ntsc", fps="30000/1001", frames="4k+1")
    # a cache of its own: offline, datasets may reuse another test's cache of a folder of the same name
    ds = datasets.load_dataset(str(tmp_path / "hf-ntsc"), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds["clip_id"] == KEPT and m["counts"]["written"] == 3 and m["normalise"]["fps"] == "30000/1001"
    for r in ds:
        got = _read_back(r["video"])
        assert got["frames"] == r["num_frames"] == _4k1(round(rows[r["clip_id"]]["num_frames"] / 25 * ntsc))
        assert got["rate"] == ntsc and r["fps"] == pytest.approx(float(ntsc))


def _numbered_clip(path, n: int, rate: int, sar=None, width: int = 64, height: int = 48):
    """A synthetic clip whose frame i is flat grey 16 + 5 i (BT.601 tags), so a decoded frame says which it is."""
    import av
    import numpy as np

    from stages.media import Colour, for_encoder, tag_encoder

    colour = Colour(1, 6, 6, 6)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        if sar:
            s.codec_context.sample_aspect_ratio = sar
        tag_encoder(s.codec_context, colour)
        for i in range(n):
            rgb = np.full((height, width, 3), 16 + 5 * i, np.uint8)
            if sar:  # the left half white: where the split lands tells whether the SAR was applied
                rgb[:, : width // 2] = 255
            f = for_encoder(av.VideoFrame.from_ndarray(rgb, format="rgb24"), width, height, colour)
            f.pts, f.time_base = i, Fraction(1, rate)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _which(frames) -> list[int]:
    """The source frame number each decoded frame of a _numbered_clip shows (from its right half's grey)."""
    return [round((float(f[:, f.shape[1] // 2 :].mean()) - 16) / 5) for f in frames]


def test_retiming_picks_the_frame_on_screen_and_keeps_the_middle(tmp_path):
    """Each output instant k / F shows the source frame on screen then (never a blend): 30 -> 12 fps drops frames,
    30 -> 50 repeats them; a millisecond time base (MKV) at its own rate drops and repeats nothing; --frames 4k+1
    keeps the middle frames."""
    from pipeline.normalise import Normalise, normalise_clip

    src = _numbered_clip(tmp_path / "n.mkv", 40, 30)  # Matroska: timestamps in ms (0, 33, 67, 100 ...)
    down = normalise_clip(src, tmp_path / "down.mp4", Normalise.build(fps=12))
    got = _read_back(tmp_path / "down.mp4")
    assert down["num_frames"] == got["frames"] == 16 and got["rate"] == 12  # 40 / 30 s x 12
    assert _which(got["pixels"]) == [int(k * 30 / 12) for k in range(16)]  # 0, 2, 5, 7, 10 ...
    up = normalise_clip(src, tmp_path / "up.mp4", Normalise.build(fps=50, frames="4k+1"))
    got = _read_back(tmp_path / "up.mp4")
    assert up["num_frames"] == got["frames"] == 65 and got["rate"] == 50  # 67 instants, the middle 65 kept
    assert _which(got["pixels"]) == [int((k + 1) * 30 / 50) for k in range(65)]
    assert up["offset_s"] == pytest.approx(1 / 50)
    same = normalise_clip(src, tmp_path / "same.mp4", Normalise.build(fps=30, frames="4k+1"))
    got = _read_back(tmp_path / "same.mp4")
    assert same["copied"] is False and got["frames"] == 37 and got["rate"] == 30
    assert _which(got["pixels"]) == list(range(1, 38))  # every frame once, from frame 1: none lost to ms rounding
    whole = normalise_clip(src, tmp_path / "whole.mp4", Normalise.build(fps=30, min_frames=40))
    assert whole["copied"] is True and (tmp_path / "whole.mp4").read_bytes() == src.read_bytes()


def test_anamorphic_clip_becomes_square_pixels_and_too_short_or_small_is_said(tmp_path):
    """A clip with 2:1 pixels is written at its display size with square pixels (its left half stays its left half),
    cropped to a bucket with the centre kept; a clip smaller than every bucket is too_small, one without a frame left
    is too_short."""
    from pipeline.normalise import TOO_SHORT, Normalise, normalise_clip, plan_frames

    src = _numbered_clip(tmp_path / "sar.mp4", 9, 25, sar=Fraction(2, 1), width=80, height=48)
    got = normalise_clip(src, tmp_path / "sq.mp4", Normalise.build(frames="4k+1"))
    back = _read_back(tmp_path / "sq.mp4")
    assert (got["width"], got["height"]) == back["size"] == (160, 48) and back["frames"] == 9
    assert back["sar"] in (None, 0, 1) and back["colour"] == (1, 6, 6, 6)
    first = back["pixels"][0].astype(int)
    assert first[:, :76].min() > 240 and first[:, 84:].max() < 40  # white left half, 80 of 160 columns
    one = {"buckets": [{"frames": 1, "height": 48, "width": 64}]}
    bucket = normalise_clip(src, tmp_path / "b.mp4", Normalise.build(buckets=one))
    back = _read_back(tmp_path / "b.mp4")
    assert bucket["bucket"] == "48x64" and back["size"] == (64, 48)
    middle = back["pixels"][0].astype(int)  # the centre 64 of 160 columns: 32 white, 32 grey
    assert middle[:, :28].min() > 240 and middle[:, 36:].max() < 40
    small = Normalise.build(buckets={"buckets": [{"frames": 1, "height": 64, "width": 64}]})
    assert normalise_clip(src, tmp_path / "s.mp4", small) == "too_small" and not (tmp_path / "s.mp4").exists()
    tiny = normalise_clip(src, tmp_path / "t.mp4", Normalise.build(fps="0.5"))  # 0.36 s x 0.5: no instant
    assert tiny == TOO_SHORT and not (tmp_path / "t.mp4").exists()
    assert plan_frames([], 0, Fraction(1, 25), Normalise()) == TOO_SHORT


def test_normalising_options_refused_where_they_do_not_apply(out, tmp_path):
    """csv references the clips in OUT as they are: it refuses the normalisations (exit 2, one line, nothing
    written); a --max-frames not of the --frames form and an odd bucket side are refused by name."""
    root, _ = out
    cmd = [sys.executable, "-m", "pipeline.cli", "export", str(root), "--dest"]
    r = subprocess.run([*cmd, str(tmp_path / "c"), "--format", "csv", "--fps", "16"], capture_output=True, text=True)
    assert r.returncode == 2 and "csv" in r.stderr and "--fps" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
    r = subprocess.run([*cmd, str(tmp_path / "d"), "--format", "folder", "--frames", "4k+1", "--max-frames", "32"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "--max-frames 32" in r.stderr and not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="odd side"):
        export(root, "folder", tmp_path / "e", buckets={"buckets": [{"frames": 1, "height": 33, "width": 64}]})
    with pytest.raises(ValueError, match="--frames"):
        export(root, "folder", tmp_path / "e", frames="4k+2")


def test_hdr_clip_stays_10_bit_with_its_tags(tmp_path):
    """A PQ (HDR10) clip is normalised in 10 bits, cropped to its bucket on the same pixels in every plane, and keeps
    its BT.2020 / PQ tags."""
    import av
    import numpy as np

    from pipeline.normalise import Normalise, normalise_clip

    with av.open(str(tmp_path / "hdr.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p10le"
        s.codec_context.color_range, s.codec_context.colorspace = 1, 9
        s.codec_context.color_primaries, s.codec_context.color_trc = 9, 16
        for i in range(12):
            f = av.VideoFrame(96, 64, "yuv420p10le")
            for j, p in enumerate(f.planes):
                a = np.frombuffer(p, "<u2").reshape(p.height, p.line_size // 2)
                a[:] = 512 if j else 64 + 40 * i  # luma says which frame; the left half brighter
                if j == 0:
                    a[:, :48] = 900
            f.pts, f.time_base = i, Fraction(1, 25)
            for packet in s.encode(f):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    one = {"buckets": [{"frames": 1, "height": 64, "width": 64}]}
    got = normalise_clip(tmp_path / "hdr.mp4", tmp_path / "out.mp4", Normalise.build(frames="4k+1", buckets=one))
    assert (got["num_frames"], got["width"], got["height"], got["offset_s"]) == (9, 64, 64, 0.04)  # 12 -> middle 9
    with av.open(str(tmp_path / "out.mp4")) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.pix_fmt, cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc) == (
            "yuv420p10le", 1, 9, 9, 16
        )  # fmt: skip
        f = next(c.decode(video=0))
        y = np.frombuffer(f.planes[0], "<u2").reshape(f.planes[0].height, -1)[:, :64].astype(int)
    assert abs(y[:, 4:28] - 900).max() <= 8 and abs(y[:, 36:60] - 104).max() <= 8  # 16 columns cut each side; frame 1


def test_export_grid_buckets_take_the_largest_of_the_named_ratio():
    """A grid's 16:9 rounds to 96x176 at 128 and 192x336 at 256: export, like prepare, sends a wide clip to the
    largest of them it fills (a newcomer's find: export used to rebuild the buckets without their ratio)."""
    from pipeline.normalise import Normalise

    norm = Normalise.build(buckets={"resolutions": [128, 256], "aspect_ratios": ["16:9", "1:1"], "multiple": 16})
    for w, h in [(640, 272), (1280, 544), (1920, 1080)]:
        b = norm.buckets.assign(w, h, 1)
        assert (b.height, b.width) == (192, 336)
