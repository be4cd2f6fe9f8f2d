"""Shared fixtures: real sample footage, a scratch dir, and one local Ray for the session."""

from __future__ import annotations

import os

# A missing model must fail at once, never after hub retries; tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from pipeline.footage import sample_video  # noqa: E402


@pytest.fixture(scope="session")
def readme_block():
    """``block(after, lang, section=None)``: the first ```lang block of README.md after the line containing ``after``
    (searched from the heading ``section`` when given), for tests that run the README's examples as written."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()

    def block(after: str, lang: str, section: str | None = None) -> str:
        start = text.index(after, text.index(section) if section else 0)
        m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
        assert m, f"no {lang} block after {after!r}"
        return m.group(1)

    return block


@pytest.fixture(scope="session")
def bikes():
    return sample_video("bikes")


@pytest.fixture(scope="session")
def bigbuckbunny():
    return sample_video("bigbuckbunny")


@pytest.fixture(scope="session")
def carphone():
    return sample_video("carphone")


@pytest.fixture(scope="session")
def transnet_test_video():
    return sample_video("transnet_test")


@pytest.fixture(scope="session")
def transnet_test_head(tmp_path_factory):
    """The first ~42 s of the real transnet_test footage (1058 of its 5301 frames, 160x90, with its audio): its own
    packets remuxed, not re-encoded, cut before the keyframe at the first shot that starts 40 s in, so the head is
    a whole, decodable file with the same encoding, ~30 of the original's shots and ~25 clips at clips.max_s 3."""
    import av

    src = sample_video("transnet_test")
    dst = tmp_path_factory.mktemp("transnet_head") / "test_head.mp4"
    with av.open(str(src)) as inp:
        video = inp.streams.video[0]
        # where to cut: the first keyframe at or after 40 s (x264 puts one at each shot start: a closed GOP, so no
        # kept frame references a dropped one)
        keyframes = (p.pts * p.time_base for p in inp.demux(video) if p.is_keyframe and p.pts is not None)
        cut = next(t for t in keyframes if t >= 40)
        inp.seek(0)
        with av.open(str(dst), "w") as out:
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
            video_done = False
            for p in inp.demux(*[inp.streams[i] for i in streams]):
                if p.pts is None or p.dts is None:  # the demuxer's flush packets
                    continue
                if p.stream.type == "video":
                    video_done = video_done or (p.is_keyframe and p.pts * p.time_base >= cut)
                    if video_done:
                        continue
                elif p.pts * p.time_base >= cut:
                    continue
                p.stream = streams[p.stream.index]
                out.mux(p)
    with av.open(str(dst)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert 1000 < frames < 1100 and float(cut) < 45, (frames, float(cut))
    return dst


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def curated_dataset(tmp_path_factory, ray_local):
    """A real curated OUT shared by the report and viewer tests: ``run()`` over real footage with its demo
    captions (bikes, bigbuckbunny, carphone) plus the mixed good/broken corpus."""
    import shutil

    from pipeline import config
    from pipeline.demo import DEMO_CORPUS
    from pipeline.run import run
    from pipeline.testdata import make_mixed_corpus

    root = tmp_path_factory.mktemp("curated")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, (source, caption) in DEMO_CORPUS.items():
        if source == "transnet_test":  # 212 s: too long for a fast test
            continue
        shutil.copyfile(sample_video(source), corpus / name)
        (corpus / name).with_suffix(".txt").write_text(caption + "\n")
    make_mixed_corpus(corpus / "mixed")
    # no CLIP stage: no report or viewer test reads CLIP scores (without weights here the stage was skipped after a
    # model check that cost the run seconds); the caption stage stays, its skipped_no_model rows are in the report
    cfg = config.load(None, {"clips.min_s": "0.5", "clips.max_s": "4", "clip.enabled": "false"})
    cfg.inputs, cfg.output = [str(corpus)], str(root / "out")
    run(cfg)
    return root / "out"


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def start_chromium(tmp_path_factory):
    """Test setup for the browser tests: Debian chromium + chromium-driver (installed with apt when missing: CI
    machines start without them); yields a factory of fresh headless selenium drivers. Each driver's profile
    (~3 MB) is a directory under pytest's basetemp, removed when the session ends (callers quit their drivers)."""
    import shutil
    import subprocess

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if shutil.which("apt-get") is None:
            pytest.skip("chromium is not installed and apt-get is unavailable to install chromium + chromium-driver")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium", "chromium-driver"], check=True, env=env, capture_output=True
        )
        assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "apt installed chromium but not into /usr/bin"

    profiles: list[Path] = []

    def start(width: int = 1280, height: int = 900):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        profiles.append(tmp_path_factory.mktemp("chromium-profile"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--mute-audio",
            f"--user-data-dir={profiles[-1]}",
            f"--window-size={width},{height}",
        ):
            opts.add_argument(arg)
        return webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))

    yield start
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshot_path(tmp_path_factory):
    """docs/img/<name> when CLIPFORGE_UPDATE_SCREENSHOTS=1 (the README screenshots), else a scratch file under
    pytest's basetemp (kept for a look after the run, gone with pytest's own cleanup of old runs): a test run must
    not rewrite tracked files."""

    def path(name: str) -> Path:
        if os.environ.get("CLIPFORGE_UPDATE_SCREENSHOTS") == "1":
            return Path(__file__).resolve().parents[1] / "docs" / "img" / name
        return tmp_path_factory.mktemp("screenshots") / name

    return path


@pytest.fixture(scope="session")
def tiny_random_clip_dir(tmp_path_factory):
    """A RANDOMLY initialised tiny open_clip (ViT width 64, 2 layers; text width 64, 2 layers) saved as a local
    directory (open_clip_config.json + open_clip_model.safetensors): loads through the production loader."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    d = tmp_path_factory.mktemp("tiny_random_clip")
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)  # random weights: only ever built here, in a test
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "open_clip_model.safetensors"))
    return d


# ------------------------------------------------------------------------------------------------ media cases
# The team's media cases (../shared/media-cases: VFR, anamorphic, full range, edit lists, cover art, rotation,
# 10-bit, live WebM, MPEG-TS, 23.976 fps) with their truth. tests/media/make_media_cases.py is a copy of the shared
# builder, so the suite runs from a clone alone; test_media_cases checks the copy matches the shared one.
MEDIA_CASES_VENDORED = Path(__file__).parent / "media" / "make_media_cases.py"
MEDIA_CASES_SHARED = Path(__file__).resolve().parents[2] / "shared" / "media-cases" / "make_media_cases.py"


def load_media_cases_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_media_cases", MEDIA_CASES_VENDORED)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def media_case_builders():
    """(vendored copy, shared original) of the media-case builder."""
    return MEDIA_CASES_VENDORED, MEDIA_CASES_SHARED


@pytest.fixture(scope="session")
def media_cases(tmp_path_factory):
    """(root, expect, module): every case file built once for the session, its truth, and the builder (read_bars,
    shot_of, encode, frame, kinds for cases of our own)."""
    import json

    mod = load_media_cases_module()
    root = tmp_path_factory.mktemp("media_cases")
    mod.main(str(root))
    import shutil

    shutil.rmtree(root / "_tmp", ignore_errors=True)
    return root, json.loads((root / "expect.json").read_text()), mod
