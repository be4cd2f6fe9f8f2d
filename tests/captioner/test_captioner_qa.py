"""Caption QA on crafted texts: each flag, the boilerplate fix, and clean captions staying clean."""

from __future__ import annotations

import pytest

from captioner import qa

GOOD = (
    "A man in a red jacket rides a mountain bike down a dirt trail through a pine forest, leaning into a turn "
    "as dust rises behind the rear wheel. The camera tracks alongside him at a low angle in warm late afternoon "
    "light, in a sharp, saturated live-action style."
)


def test_clean_caption_has_no_flags():
    r = qa.check(GOOD)
    assert r.flags == []
    assert r.problems == []
    assert r.text == GOOD


@pytest.mark.parametrize("text", ["", "   ", "...", "\n\t-"])
def test_empty(text):
    r = qa.check(text)
    assert r.flags == [qa.QA_EMPTY]
    assert r.text == ""


def test_truncated_only_from_the_token_limit():
    assert qa.check(GOOD, hit_token_limit=True).flags == [qa.QA_TRUNCATED]
    # an unfinished-looking sentence that ended on EOS is not truncated
    assert qa.QA_TRUNCATED not in qa.check(GOOD[:-1] + " and", hit_token_limit=False).flags


@pytest.mark.parametrize(
    "text",
    [
        GOOD + " The man rides the bike down the trail." * 5,  # a word n-gram loop
        "A dog runs on the beach " + "and the dog runs on the beach " * 6,
        "A cat sits on a sofa sssssssssssssssssssssssss",  # a character loop
        "A woman waves, la la la la la la la la at the crowd",
    ],
)
def test_repetition(text):
    assert qa.QA_REPETITION in qa.check(text).flags


def test_repetition_score_counts_repeated_ngrams():
    assert qa.repetition_score(GOOD) == 0.0
    assert qa.repetition_score("a b c d " * 10) > 0.8


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't describe the contents of this video.",
        "As an AI, I do not have the ability to watch videos.",
        "I am unable to view the video you provided.",
        "Unfortunately I cannot see the clip.",
    ],
)
def test_refusal(text):
    assert qa.QA_REFUSAL in qa.check(text).flags


def test_refusal_does_not_fire_on_descriptions_of_people_talking():
    assert qa.QA_REFUSAL not in qa.check("A sorry-looking dog sits by the door as rain falls outside.").flags


@pytest.mark.parametrize(
    "text",
    [
        "Ein Mann fährt mit dem Fahrrad über einen staubigen Waldweg, die Kamera folgt ihm seitlich.",
        "一个男人骑着自行车穿过森林，镜头从侧面跟随他移动。",
        "Мужчина едет на велосипеде по пыльной лесной дороге, камера следует за ним.",
    ],
)
def test_wrong_language(text):
    assert qa.QA_LANGUAGE in qa.check(text).flags


def test_language_check_can_be_disabled_and_short_text_is_not_judged():
    assert qa.QA_LANGUAGE not in qa.check("Ein Mann fährt mit dem Fahrrad über einen Waldweg.", language=None).flags
    assert qa.wrong_language("Zoom!") is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The video shows a man riding a bike.", "A man riding a bike."),
        ("In this video, a man rides a bike.", "A man rides a bike."),
        ("This clip depicts two dogs playing in snow.", "Two dogs playing in snow."),
        ("Sure! Here is a detailed description of the video: a man rides a bike.", "A man rides a bike."),
        ("The footage captures an aerial view of a city.", "An aerial view of a city."),
    ],
)
def test_boilerplate_stripped_and_recapitalised(raw, expected):
    r = qa.check(raw)
    assert r.text == expected
    assert qa.FIX_BOILERPLATE in r.flags
    assert r.problems == []  # a fixed prefix is a note, not a problem: no retry


def test_boilerplate_alone_is_not_stripped_to_nothing():
    assert qa.check("The video shows").text == "The video shows"


def test_problems_trigger_retry_set():
    assert qa.RETRY_FLAGS == {qa.QA_EMPTY, qa.QA_TRUNCATED, qa.QA_REPETITION, qa.QA_REFUSAL, qa.QA_LANGUAGE}
    assert qa.FIX_BOILERPLATE not in qa.RETRY_FLAGS and qa.RETRIED not in qa.RETRY_FLAGS
