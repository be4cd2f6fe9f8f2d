"""Caption QA: checks every generated caption and cleans what can be cleaned.

Flags (stored in ``caption_flags``; a clip with any ``qa_*`` flag left after its one retry is ``flagged``):

- ``qa_empty``        no letters or digits at all.
- ``qa_truncated``    generation stopped at ``max_new_tokens`` without an end-of-sequence token.
- ``qa_repetition``   a loop: a word n-gram repeated many times, or a short character span repeated back to back.
- ``qa_refusal``      the model declined ("I'm sorry, I can't ...", "As an AI ...").
- ``qa_language``     not the expected language (light heuristic below).

Notes (informational, never trigger a retry): ``fix_boilerplate`` (a "The video shows ..." style prefix or a
"Sure! Here is ..." preamble was stripped and the sentence re-capitalised) and ``retried`` (added by the
captioner when the clip was generated a second time).

Language heuristic, chosen over a detector library because VLM captions are long, plain English prose and a
detector would be one more dependency (and fastText-style models need weights): for ``en`` the text must be
>= 90% ASCII letters among its letters, and a caption of >= 8 words must contain English function words
(>= 8% of words). Other expected languages only get the script test (non-Latin scripts are not judged).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

QA_EMPTY = "qa_empty"
QA_TRUNCATED = "qa_truncated"
QA_REPETITION = "qa_repetition"
QA_REFUSAL = "qa_refusal"
QA_LANGUAGE = "qa_language"
FIX_BOILERPLATE = "fix_boilerplate"
RETRIED = "retried"

RETRY_FLAGS = frozenset({QA_EMPTY, QA_TRUNCATED, QA_REPETITION, QA_REFUSAL, QA_LANGUAGE})

# Subject-free openers VLMs put before the description; stripped as in DALL-E 3's recaptioning cleanup.
_BOILERPLATE = re.compile(
    r"^\s*(?:"
    r"(?:in|throughout)\s+(?:this|the)\s+(?:video|clip|footage|scene|image|frames?)\s*,?\s*(?:we\s+(?:see|can\s+see))?"
    r"|(?:this|the)\s+(?:short\s+)?(?:video|clip|footage|scene|image|frames?|sequence)\s+"
    r"(?:shows|depicts|features|captures|showcases|presents|displays|highlights|illustrates|is\s+of)"
    r"(?:\s+(?:us|an?\s+view\s+of))?"
    r"|(?:this|it)\s+is\s+an?\s+(?:video|clip|footage)\s+(?:of|showing|that\s+shows)"
    r"|we\s+(?:see|can\s+see)"
    r")\s*:?\s*",
    re.IGNORECASE,
)
# A chatty first sentence ending in a colon: "Sure! Here is a detailed description of the video:".
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok)[!,.]?\s*)?"
    r"(?:here(?:'s| is)\b[^:\n]{0,80}:|(?:sure|certainly|of course)[!.,]\s*)\s*",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i'?m\s+sorry|i\s+am\s+sorry|i\s+apologi[sz]e|as\s+an\s+ai|i\s+(?:cannot|can't|can\s*not|am\s+unable\s+to|"
    r"am\s+not\s+able\s+to|'m\s+unable\s+to)\s+(?:view|see|watch|describe|help|process|provide|assist|analy[sz]e)|"
    r"i\s+(?:do\s+not|don't)\s+have\s+(?:the\s+ability|access)|unable\s+to\s+(?:view|watch|process)\s+(?:the\s+)?"
    r"(?:video|clip|content))",
    re.IGNORECASE,
)
# Five or more back-to-back copies of a 1-30 character span ("ssssss", "la la la la la", "-_-_-_-_-_").
_CHAR_LOOP = re.compile(r"(.{1,30}?)\1{4,}", re.DOTALL)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_EN_FUNCTION_WORDS = frozenset(
    "a an the and or but of in on at to with from by for as is are was were be being been it its this that these "
    "those there their they he she his her him them while into over under through across against near behind "
    "up down out off then than which who whom whose".split()
)


@dataclass
class QAResult:
    """Cleaned text plus the flags/notes raised on the raw text."""

    text: str
    flags: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Flags that make a caption unusable as is (they trigger the one retry)."""
        return [f for f in self.flags if f in RETRY_FLAGS]


def strip_boilerplate(text: str) -> tuple[str, bool]:
    """Remove a chatty preamble and a "The video shows ..." opener; re-capitalise. Returns (text, changed)."""
    out = text.strip()
    changed = False
    for pattern in (_PREAMBLE, _BOILERPLATE):
        m = pattern.match(out)
        if m and m.end() > 0 and out[m.end() :].strip():
            out = out[m.end() :].lstrip(" ,:;-")
            changed = True
    if changed and out:
        out = out[0].upper() + out[1:]
    return out, changed


def repetition_score(text: str, n: int = 4) -> float:
    """Fraction of word n-grams that are repeats of an earlier n-gram (0 = none, -> 1 = one loop)."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def has_repetition(text: str, *, n: int = 4, max_repeat_fraction: float = 0.3, max_count: int = 3) -> bool:
    """True for generation loops: an n-gram seen > max_count times, >30% repeated n-grams, or a char-span loop."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    if grams and max(grams.values()) > max_count:
        return True
    if repetition_score(text, n) > max_repeat_fraction:
        return True
    return bool(_CHAR_LOOP.search(text))


def is_refusal(text: str) -> bool:
    """True when the text declines to describe instead of describing."""
    return bool(_REFUSAL.search(text))


def wrong_language(text: str, expected: str = "en") -> bool:
    """Heuristic language check (see module docstring); never flags very short or empty text."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 8:
        return False
    latin = sum(c.isascii() for c in letters) / len(letters)
    if expected == "en":
        if latin < 0.9:
            return True
        words = [w.lower() for w in _WORD.findall(text)]
        if len(words) >= 8 and sum(w in _EN_FUNCTION_WORDS for w in words) / len(words) < 0.08:
            return True
        return False
    return False


def check(text: str, *, hit_token_limit: bool = False, language: str | None = "en") -> QAResult:
    """Run every QA check on one raw caption; return the cleaned text and its flags (stable order)."""
    flags: list[str] = []
    cleaned, changed = strip_boilerplate(text)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if not any(c.isalnum() for c in cleaned):
        return QAResult("", [QA_EMPTY] + ([QA_TRUNCATED] if hit_token_limit else []))
    if changed:
        flags.append(FIX_BOILERPLATE)
    if hit_token_limit:
        flags.append(QA_TRUNCATED)
    if has_repetition(cleaned):
        flags.append(QA_REPETITION)
    if is_refusal(cleaned):
        flags.append(QA_REFUSAL)
    if language and wrong_language(cleaned, language):
        flags.append(QA_LANGUAGE)
    return QAResult(cleaned, flags)
