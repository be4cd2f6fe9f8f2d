"""CLIP scores in the run, and the CLIP text-video match after captioning, with tiny RANDOM models built here.

The models are built from configs with random weights and saved to local directories: the production loading
code (local path, exactly as a user passes it) is exercised; the numbers mean nothing.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from pipeline import config, store
from pipeline.run import run


@pytest.fixture(scope="module")
def tiny_random_models(tmp_path_factory, tiny_random_clip_dir):
    from captioner.tiny_random import build_tiny_random_smolvlm
    from stages.clip_scores import aesthetic_head

    d = tiny_random_clip_dir
    head = tmp_path_factory.mktemp("head") / "tiny_random_aesthetic.pth"
    torch.save(aesthetic_head(32).state_dict(), head)
    vlm = build_tiny_random_smolvlm(tmp_path_factory.mktemp("tiny_random_smolvlm"))
    return d, head, vlm


def test_tiny_random_clip_and_captions_through_the_run(
    tmp_path, tiny_random_models, bigbuckbunny, carphone, ray_local
):
    clip_dir, head, vlm = tiny_random_models
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copyfile(bigbuckbunny, corpus / "bunny.mp4")
    shutil.copyfile(carphone, corpus / "carphone.mp4")
    cfg = config.load(
        None,
        {
            "clips.min_s": "1.0",
            "filters.min_duration_s": "1.0",
            "filters.min_aesthetic": "none",  # random head: its scores must not decide anything here
            "clip.model": str(clip_dir),
            "clip.aesthetic_head": str(head),
            "captioner.model": str(vlm),
            "captioner.max_new_tokens": "8",
            "captioner.max_new_tokens_short": "4",
            "captioner.frames_per_clip": "2",
        },
    )
    cfg.inputs, cfg.output = [str(corpus)], str(tmp_path / "out")
    summary = run(cfg)
    assert any("CLIP text-video match scored for 2" in n for n in summary.notes), summary.notes
    con = store.open(cfg.output)
    rows = con.execute(
        "SELECT len(clip_embedding), aesthetic, clip_model, caption_status, clip_text_score, text_column FROM kept"
    ).fetchall()
    assert len(rows) == 2
    for dim, aesthetic, clip_model, status, text_score, column in rows:
        assert dim == 32 and aesthetic is not None and str(clip_dir) in clip_model
        assert status in ("ok", "flagged")
        assert -1.0 <= text_score <= 1.0 and column == "caption_dense"
    # rerunning scores nothing again: every caption already has its text score
    again = run(cfg)
    assert not any("text-video" in n for n in again.notes)
    # refilter loads only the columns the rules and dedup read: never the embeddings or the captions
    from pipeline.steps import filter_clips

    real_open, selects = store.open, []

    class Recording:
        def __init__(self, con):
            self.con = con

        def sql(self, q, *a, **k):
            selects.append(q)
            return self.con.sql(q, *a, **k)

        def __getattr__(self, name):
            return getattr(self.con, name)

    def recording_open(*a, **k):
        return Recording(real_open(*a, **k))

    import pipeline.steps as run_mod

    before = store.open(cfg.output).execute("SELECT clip_id, drop_reason FROM clips ORDER BY 1").fetchall()
    run_mod.store.open = recording_open
    try:
        filter_clips(cfg.output, cfg)
    finally:
        run_mod.store.open = real_open
    # the rules' and dedup's columns, and the shared-overlay look's (stages/shared_overlay.py): its clips and boxes
    rules, *look = [q for q in selects if "FROM clips" in q]
    assert '"sharpness"' in rules and '"phash"' in rules
    assert len(look) <= 1 and all('"overlay_box"' in q and '"sharpness"' not in q for q in look), look
    for select in (rules, *look):
        assert "clip_embedding" not in select and "caption" not in select and "*" not in select
    assert store.open(cfg.output).execute("SELECT clip_id, drop_reason FROM clips ORDER BY 1").fetchall() == before
