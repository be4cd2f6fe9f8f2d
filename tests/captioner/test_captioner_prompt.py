"""Versioned prompt files: tags, headers, and the content the dense prompt must ask for."""

from __future__ import annotations

import pytest

from captioner import list_prompts, load_prompt
from captioner.prompt import parse_prompt


def test_shipped_prompts_load_with_id_and_version():
    assert {"dense_v1", "short_v1", "enhance_v1", "upsample_v1"} <= set(list_prompts())
    for tag in list_prompts():
        p = load_prompt(tag)
        assert p.tag == tag
        assert not p.text.startswith("#")


def test_dense_prompt_asks_for_every_aspect_in_prose():
    text = load_prompt("dense_v1").text.lower()
    aspects = ("subject", "appearance", "motion", "setting", "camera angle", "camera movement", "lighting", "style")
    for aspect in aspects:
        assert aspect in text, aspect
    assert "flowing prose" in text and "preamble" in text


def test_short_prompt_is_one_sentence_and_rewrite_prompts_take_a_caption():
    assert "one short sentence" in load_prompt("short_v1").text
    assert "{caption}" in load_prompt("enhance_v1").text
    assert "{caption}" in load_prompt("upsample_v1").text


def test_prompt_from_a_path_and_header_parsing(tmp_path):
    f = tmp_path / "mine_v3.txt"
    f.write_text("Describe the clip briefly.\n")
    p = load_prompt(f)
    assert (p.id, p.version, p.text) == ("mine", "v3", "Describe the clip briefly.")
    p2 = parse_prompt("# id: x\n# version: v9\n# kind: short\n# a comment\nHello\nworld\n")
    assert (p2.tag, p2.kind, p2.text) == ("x_v9", "short", "Hello\nworld")


def test_unknown_prompt_raises():
    with pytest.raises(FileNotFoundError, match="dense_v99"):
        load_prompt("dense_v99")
    with pytest.raises(ValueError, match="no prompt text"):
        parse_prompt("# id: x\n")
