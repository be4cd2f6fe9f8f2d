"""Camera-motion tags of a clip, from its stored camera scores (``camera_pan``, ``camera_tilt``, ``camera_zoom``:
``stages.cpu_scores.camera_motion``): the labels Open-Sora-style datasets carry as a conditioning signal ("pan left",
"zoom in", "static"), derived, not stored, so they follow a change of :data:`MOVE` without decoding anything.

One definition, two forms: :func:`camera_tags` (Python, for a row) and :func:`camera_tags_sql` (the DuckDB
expression the ``clips`` view uses for its ``camera_tags`` column); tests/stages/test_camera.py checks they agree.
"""

from __future__ import annotations

import math
from typing import Any

# A camera move is tagged when its speed is at least MOVE: frame diagonals per second for pan and tilt, log scale
# per second for zoom (1.5 % of the picture per second). Measured (bench/motion_bench.py, bench/results/motion.json):
# the camera scores of locked-off and handheld real shots stay within 0.0061 (bigbuckbunny's opening, carphone) and
# 0.0096 on carphone darkened (tests/pipeline/test_curation.py's corpus), a still panned at 1 % of its width per
# second measures 0.009 and at 3 % 0.027, a 1 %/s and 4 %/s zoom 0.0099 and 0.039; a real pan in bikes measures
# 0.12. MOVE sits above that handheld noise (1.6x its highest), so a deliberate move of ~1.5 %/s or more is tagged
# and camera shake is not; a slower drift is "static".
MOVE = 0.015

# (score column, tag when positive, tag when negative): the signs of stages.cpu_scores.camera_motion
AXES = (
    ("camera_pan", "pan right", "pan left"),
    ("camera_tilt", "tilt down", "tilt up"),
    ("camera_zoom", "zoom in", "zoom out"),
)
STATIC = "static"
COLUMNS = tuple(a[0] for a in AXES)


def camera_tags(row: dict[str, Any], move: float = MOVE) -> list[str] | None:
    """The clip's camera tags: one per axis moving at least ``move`` (pan, then tilt, then zoom), or ``["static"]``
    when none does; None when the clip has no camera scores (not scored, or under two sampled frames)."""
    values = [row.get(c) for c in COLUMNS]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    tags = [pos if v >= move else neg for (_, pos, neg), v in zip(AXES, values, strict=True) if abs(v) >= move]
    return tags or [STATIC]


def camera_tags_sql(move: float = MOVE, prefix: str = "") -> str:
    """The DuckDB expression of :func:`camera_tags` over columns ``<prefix>camera_pan`` ... (a VARCHAR[])."""
    cols = [f'{prefix}"{c}"' for c in COLUMNS]
    cases = ", ".join(
        f"CASE WHEN {c} >= {move!r} THEN '{pos}' WHEN {c} <= {-move!r} THEN '{neg}' END"
        for c, (_, pos, neg) in zip(cols, AXES, strict=True)
    )
    tags = f"list_filter([{cases}], lambda x: x IS NOT NULL)"
    missing = " OR ".join(f"{c} IS NULL OR isnan({c})" for c in cols)
    return f"CASE WHEN {missing} THEN NULL WHEN len({tags}) = 0 THEN ['{STATIC}'] ELSE {tags} END"


def camera_sentence(tags: list[str] | None) -> str | None:
    """The tags as a sentence to append to a caption ("The camera pans left and zooms in." / "The camera is
    static."); None without tags."""
    if not tags:
        return None
    if tags == [STATIC]:
        return "The camera is static."
    verbs = [t.replace("pan ", "pans ").replace("tilt ", "tilts ").replace("zoom ", "zooms ") for t in tags]
    said = verbs[0] if len(verbs) == 1 else ", ".join(verbs[:-1]) + " and " + verbs[-1]
    return f"The camera {said}."
