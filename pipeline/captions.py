"""Which caption a clip takes into training or an export: the dense or short recaption, or the original text,
drawn per clip with fixed probabilities (Sora / DALL-E 3 recaptioning mixes descriptive and short captions so the
model also follows terse prompts; Betker et al., "Improving Image Generation with Better Captions", 2023:
95 % synthetic, 5 % ground truth worked best there).
"""

from __future__ import annotations

import hashlib

CAPTION_SOURCES = {"dense": "caption_dense", "short": "caption_short", "original": "original_caption"}
DEFAULT_CAPTION_MIX = {"dense": 0.6, "short": 0.3, "original": 0.1}


def choose_caption(row: dict, mix: dict[str, float], seed: int = 0) -> tuple[str | None, str | None]:
    """Pick one caption for a clip: source drawn with the ``mix`` probabilities among the sources the clip has.

    The draw is a hash of (seed, clip_id), so a clip gets the same caption on every prepare run. Missing or
    blank captions drop out and the remaining probabilities are renormalised. Returns (source, text) or
    (None, None) when the clip has no caption at all.
    """
    avail = []
    for source, p in mix.items():
        text = row.get(CAPTION_SOURCES[source])
        if p > 0 and isinstance(text, str) and text.strip():
            avail.append((source, float(p), text.strip()))
    if not avail:
        return None, None
    digest = hashlib.sha256(f"{seed}:{row['clip_id']}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64 * sum(p for _, p, _ in avail)
    for source, p, text in avail:
        if u < p:
            return source, text
        u -= p
    return avail[-1][0], avail[-1][2]


def with_camera_tags(text: str, row: dict) -> str:
    """``text`` with the clip's camera move appended as a sentence ("... The camera pans left."): the camera-motion
    tags of ``stages.camera`` from the row's camera scores; ``text`` unchanged when the row has none."""
    from stages.camera import camera_sentence, camera_tags

    tags = row.get("camera_tags")  # the view's column (a list, or a numpy array in a Ray batch) or computed here
    sentence = camera_sentence(list(tags) if tags is not None else camera_tags(row))
    if not sentence:
        return text
    text = text.rstrip()
    return f"{text}{'' if text.endswith(('.', '!', '?', '…')) else '.'} {sentence}"  # a caption without a full stop
