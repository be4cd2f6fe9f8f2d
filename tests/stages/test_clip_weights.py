"""Where CLIP and aesthetic-head weights come from: the real default (LAION's head by a pinned hub reference), hub
references served from a locally built Hugging Face cache (tiny RANDOM weights, no network), a clear message in
seconds when a model is missing and the hub is off or unreachable, and a loud note when the aesthetic filter is off.

Nothing here leaves the machine: HF_HUB_OFFLINE=1 (conftest), except the one subprocess test about an unreachable
hub, whose HF_ENDPOINT is a closed local port."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.clip_scores import (
    DEFAULT_AESTHETIC_HEAD,
    ClipScorer,
    ClipScoresConfig,
    ClipUnavailable,
    aesthetic_head,
    aesthetic_off_note,
    clip_available,
    load_aesthetic_head,
    parse_hf_ref,
    resolve_aesthetic_head,
)

REPO = Path(__file__).resolve().parents[2]
TINY_HEAD_REPO = "clipforge-test/tiny-random-aesthetic"  # not a real hub repo: only ever in a temp cache
TINY_HEAD_COMMIT = hashlib.sha1(b"tiny-random-aesthetic").hexdigest()
TINY_CLIP_REPO = "clipforge-test/tiny-random-clip"


def put_in_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str | None = None) -> str:
    """Lay ``files`` out exactly as huggingface_hub's cache holds a downloaded model repo: content-addressed blobs,
    snapshots/<commit>/<name> symlinks to them, and refs/main -> commit. Returns the commit."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    root = cache / f"models--{repo_id.replace('/', '--')}"
    for name, src in files.items():
        data = Path(src).read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return commit


def save_tiny_random_head(path: Path, width: int, seed: int) -> torch.nn.Module:
    """A RANDOM improved-aesthetic-predictor-shaped head saved as .safetensors or .pth (by suffix)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    head = aesthetic_head(width).eval()
    state = {k: v.contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path)) if path.suffix == ".safetensors" else torch.save(state, path)
    return head


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache that huggingface_hub (and open_clip through it) reads, with the hub off."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_default_head_is_the_laion_l14_head_by_a_pinned_hub_reference():
    import open_clip

    from pipeline import config

    cfg = ClipScoresConfig()
    assert cfg.aesthetic_head == DEFAULT_AESTHETIC_HEAD
    repo, revision, filename = parse_hf_ref(cfg.aesthetic_head)
    assert repo == "ttj/sac-logos-ava1-l14-linearMSE" and filename == "model.safetensors"
    assert re.fullmatch(r"[0-9a-f]{40}", revision)  # a commit, so the weights cannot change under a dataset
    assert (cfg.model, cfg.pretrained) == ("ViT-L-14", "openai")
    assert open_clip.get_model_config(cfg.model)["embed_dim"] == 768  # the head's input width
    # as users set it: the default, and "none" to switch the head (and the filter) off
    assert config.load(None, {}).clip.aesthetic_head == DEFAULT_AESTHETIC_HEAD
    assert config.load(None, {"clip.aesthetic_head": "none"}).clip.aesthetic_head is None


@pytest.mark.parametrize("bad", ["hf://only-repo/file.pth", "hf://org/repo", "hf://org/repo@/f.pth", "hf:///r/f"])
def test_malformed_hub_reference_is_a_clear_error(bad):
    with pytest.raises(ClipUnavailable, match="hf://org/repo"):
        parse_hf_ref(bad)


def test_tiny_random_head_loads_the_same_from_a_file_and_from_hub_references(hf_cache, tmp_path):
    ref_head = save_tiny_random_head(tmp_path / "head.safetensors", 768, seed=3)
    save_tiny_random_head(tmp_path / "head.pth", 768, seed=3)
    put_in_hf_cache(hf_cache, TINY_HEAD_REPO, {"model.safetensors": tmp_path / "head.safetensors"}, TINY_HEAD_COMMIT)
    put_in_hf_cache(hf_cache, TINY_HEAD_REPO + "-pth", {"weights/head.pth": tmp_path / "head.pth"})
    pinned = f"hf://{TINY_HEAD_REPO}@{TINY_HEAD_COMMIT}/model.safetensors"
    refs = [
        str(tmp_path / "head.safetensors"),
        str(tmp_path / "head.pth"),
        pinned,
        f"hf://{TINY_HEAD_REPO}/model.safetensors",  # branch main, via refs/main
        f"hf://{TINY_HEAD_REPO}-pth/weights/head.pth",  # a file in a sub-folder of the repo
    ]
    x = torch.nn.functional.normalize(torch.randn(5, 768), dim=-1)
    with torch.no_grad():
        want = ref_head(x)
        for ref in refs:
            assert torch.equal(load_aesthetic_head(ref, 768)(x), want), ref
    assert resolve_aesthetic_head(pinned).startswith(str(hf_cache))
    with pytest.raises(ClipUnavailable, match="768-d"):  # the width check holds for hub heads too
        load_aesthetic_head(pinned, 32)


def test_tiny_random_clip_with_hub_head_scores_and_a_wrong_width_fails_early(hf_cache, tmp_path, tiny_random_clip_dir):
    head32 = save_tiny_random_head(tmp_path / "h32.safetensors", 32, seed=4)
    save_tiny_random_head(tmp_path / "h768.safetensors", 768, seed=4)
    put_in_hf_cache(hf_cache, TINY_HEAD_REPO, {"h32.safetensors": tmp_path / "h32.safetensors"}, TINY_HEAD_COMMIT)
    put_in_hf_cache(hf_cache, TINY_HEAD_REPO + "-768", {"h768.safetensors": tmp_path / "h768.safetensors"})
    ref = f"hf://{TINY_HEAD_REPO}@{TINY_HEAD_COMMIT}/h32.safetensors"
    cfg = ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=ref)
    ok, msg = clip_available(cfg)
    assert ok and ref in msg and "filters.min_aesthetic applies" in msg, msg
    scorer = ClipScorer(cfg)
    e = scorer.embed_frames(np.random.default_rng(0).integers(0, 255, (2, 40, 48, 3), dtype=np.uint8))
    with torch.no_grad():
        assert scorer.aesthetic(e) == pytest.approx(head32(torch.from_numpy(e)[None]).item(), abs=1e-6)
    # an L14-shaped head on a 32-d model: refused by the availability check, before any model is built
    ok, msg = clip_available(
        ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=f"hf://{TINY_HEAD_REPO}-768/h768.safetensors")
    )
    assert not ok and "768-d" in msg and "32-d" in msg


def test_offline_missing_weights_name_the_model_and_how_to_provide_it(hf_cache, tiny_random_clip_dir):
    ok, msg = clip_available(ClipScoresConfig())  # nothing cached: the default CLIP
    assert not ok and "ViT-L-14/openai" in msg and "HF_HUB_OFFLINE=1" in msg and "HF_HOME" in msg
    assert "local checkpoint" in msg
    # CLIP there, the default head not: the head is named with the exact download command and the ways out
    ok, msg = clip_available(ClipScoresConfig(model=str(tiny_random_clip_dir)))
    repo, revision, filename = parse_hf_ref(DEFAULT_AESTHETIC_HEAD)
    assert not ok and f"aesthetic head {DEFAULT_AESTHETIC_HEAD}" in msg and "HF_HUB_OFFLINE=1" in msg
    assert f"hf download {repo} {filename} --revision {revision}" in msg and "HF_HOME" in msg
    assert "local .pth/.safetensors file" in msg and "filters.min_aesthetic is OFF" in msg
    with pytest.raises(ClipUnavailable, match="sac-logos-ava1-l14-linearMSE"):
        ClipScorer(ClipScoresConfig(model=str(tiny_random_clip_dir)))


def test_aesthetic_head_none_says_loudly_that_the_filter_is_off(tiny_random_clip_dir):
    cfg = ClipScoresConfig(model=str(tiny_random_clip_dir), aesthetic_head=None)
    ok, msg = clip_available(cfg)
    assert ok and "AESTHETIC FILTER OFF" in msg and "filters.min_aesthetic" in msg
    assert aesthetic_off_note(cfg) in msg
    assert aesthetic_off_note(ClipScoresConfig()) is None  # a head is configured
    assert aesthetic_off_note(ClipScoresConfig(enabled=False, aesthetic_head=None)) is None  # no CLIP stage at all


_UNREACHABLE_SCRIPT = """
import json, sys
import numpy as np
from stages.clip_scores import ClipScorer, ClipScoresConfig, clip_available

tiny_clip, tiny_head = sys.argv[1], sys.argv[2]
out = {"default": clip_available(ClipScoresConfig())}
out["default_head"] = clip_available(ClipScoresConfig(model=tiny_clip))
cfg = ClipScoresConfig(model=tiny_clip, aesthetic_head=tiny_head)
out["cached"] = clip_available(cfg)
scorer = ClipScorer(cfg)  # loads CLIP (hf-hub:) and the head from the cache although the hub does not answer
frames = np.random.default_rng(0).integers(0, 255, (2, 40, 48, 3), dtype=np.uint8)
out["aesthetic"] = scorer.aesthetic(scorer.embed_frames(frames))
print(json.dumps(out))
"""


@pytest.mark.timeout(600)  # a regression to huggingface_hub's retries would still end; no timing is asserted
def test_unreachable_hub_fails_without_retries_and_cached_models_still_load(tmp_path, tiny_random_clip_dir):
    """As a user on a machine without internet and without HF_HUB_OFFLINE: the hub endpoint is a closed local port."""
    hf_home = tmp_path / "hf_home"
    cache = hf_home / "hub"
    put_in_hf_cache(
        cache,
        TINY_CLIP_REPO,
        {n: tiny_random_clip_dir / n for n in ("open_clip_config.json", "open_clip_model.safetensors")},
    )
    save_tiny_random_head(tmp_path / "h32.safetensors", 32, seed=5)
    put_in_hf_cache(cache, TINY_HEAD_REPO, {"model.safetensors": tmp_path / "h32.safetensors"}, TINY_HEAD_COMMIT)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _UNREACHABLE_SCRIPT,
            f"hf-hub:{TINY_CLIP_REPO}",
            f"hf://{TINY_HEAD_REPO}@{TINY_HEAD_COMMIT}/model.safetensors",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    ok, msg = out["default"]
    assert not ok and "ViT-L-14/openai" in msg and "unreachable" in msg and "127.0.0.1:9" in msg, msg
    assert "HF_HOME" in msg and "local checkpoint" in msg
    ok, msg = out["default_head"]
    assert not ok and f"aesthetic head {DEFAULT_AESTHETIC_HEAD}" in msg and "unreachable" in msg, msg
    ok, msg = out["cached"]
    assert ok and str(cache) in msg, msg
    assert np.isfinite(out["aesthetic"])
    # one probe instead of huggingface_hub's backoff: no file request was ever retried
    assert "Retry" not in proc.stderr, proc.stderr[-3000:]
