"""The one place the stored tables' pyarrow schemas are defined. docs/SCHEMA.md documents every column.

The dataset is a set of tables, each a Delta Lake table (Parquet files + log) under OUT/tables/<name>/.
Stage tables are keyed by ``video_id`` or ``clip_id``; DuckDB views (pipeline/store.py) join them
into the ``videos``, ``clips`` and ``kept`` views users query.
"""

from __future__ import annotations

import pyarrow as pa

# Stage output schemas live next to the stage code that fills them (the contract is where the code is);
# this module assembles them into the stored tables.
from stages.caption import CAPTIONS_SCHEMA as _CAPTIONS
from stages.clip_scores import CLIP_SCORES_SCHEMA as _CLIP_SCORES
from stages.clip_scores import TEXT_SCORES_SCHEMA as _TEXT_SCORES
from stages.cpu_scores import SCORES_SCHEMA as _SCORES

# 21: clips.crop_top, crop_bottom, crop_left, crop_right (what clips.crop_bars cut from each side of the picture;
# null where the option is off or the clip was not cut: older rows read null);
# 20: scores.overlay_planes "Y,R-Y,B-Y" (the overlay test's chroma planes as colour differences in RGB levels, not
# as coded: a red logo whose luma matches the street under it was missed; rows with "YCrCb" are scored again);
# 19: scores.pair_change (a flow pair is frozen when its most-changed 1 % of the picture changes under
# scores.frozen_change, not its mean under 0.5 levels: a darkened locked-off shot whose subject is small was frozen and
# motion_static; rows without it are scored again);
# 18: scores.luma_highlight (the dark rules drop a clip only when its highlights are dark too: a night or low-key
# look keeps its lights; rows without it are scored again);
# 17: scores.cepstrum_dip (the motion-blur rule asks a smear's spectral notches too below filters.max_streak_alone:
# depth of field over grass reads isotropy and streak like a smear; rows without it are scored again);
# 16: scores.focus, detail and noise_floor the mean over four phases of their tile grid (no new column: older rows
# keep their one-grid values, on the same scale and thresholds, and are not scored again);
# 15: scores.residual_flow (the still-picture rule needs it below min_residual_flow too: parallax tells a real
# camera move over a near-still scene from a photo);
# 14: filters.overlay_refused (why a match with another clip's overlay was not taken; the look also asks the graphic
# to sit at the seed's pixels in each anchor); 13: filters.overlay_seen_in, overlay_match, overlay_seeds,
# overlay_error (an overlay seen in another clip of the source); 12: scores.overlay_layers (the overlay test looks
# for a fixed layer under the moving scene too);
# 11: scores.overlay_planes (the overlay test takes the chroma planes too);
# 10: scores.focus and scores.detail above each band's noise floor (grain-robust; min_focus 0.46);
# 9: scores.streak (the motion-blur rule is on: isotropy < min_isotropy and streak > max_streak);
# 8: scores.isotropy (and the min_isotropy motion-blur rule, off by default);
# 7: scores.detail (and the min_detail blur rule);
# 6: videos.source_url, license, license_id, creator, consent, tags; scores.overlay_area, overlay_box,
# overlay_persistence (and the text_overlay drop reason); 5: scores.still_residual, subtitle_area, focus;
# 4: scores.phash_mirror, scores.border_*, scores on the active picture; 3: shots.scenes.caption;
SCHEMA_VERSION = "21"  # 2: videos geometry/colour/time columns, shot times, scores.decoder
METADATA_KEY = b"clipforge.schema_version"

_span = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("caption", pa.string())])
# a shot: frames in presentation order (end exclusive) and their presentation times (s from the first frame)
_scene = pa.struct(
    [
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("caption", pa.string()),  # a given span's caption (list inputs); null for detected shots
    ]
)

VIDEOS = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("status", pa.string()),  # ok | error | duplicate
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("duplicate_of", pa.string()),  # video_id of the first file with the same content
        ("content_hash", pa.string()),
        ("size_bytes", pa.int64()),
        ("mtime", pa.float64()),
        ("container", pa.string()),
        ("codec", pa.string()),
        ("pix_fmt", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("rotation", pa.int32()),
        ("fps", pa.float64()),  # mean rate (num_frames / duration_s) for a variable-rate stream
        ("fps_nominal", pa.float64()),  # the stream's declared rate (FFmpeg's guessed rate)
        ("fps_variable", pa.bool_()),
        ("num_frames", pa.int64()),
        ("duration_s", pa.float64()),
        ("bitrate", pa.int64()),
        ("has_audio", pa.bool_()),
        ("video_stream", pa.int32()),  # index of the stream stages.media.pick_video_stream chose
        ("start_time_s", pa.float64()),  # first presentation timestamp (times in the tables count from it)
        ("sar", pa.string()),  # sample aspect ratio "num:den"; null = square pixels
        ("display_width", pa.int32()),  # upright display size: SAR applied, then the rotation
        ("display_height", pa.int32()),
        ("color_range", pa.string()),  # tv | pc | null (unspecified = tv)
        ("color_space", pa.string()),  # matrix: bt709 | smpte170m | bt470bg | bt2020nc ... | null
        ("color_primaries", pa.string()),
        ("color_transfer", pa.string()),  # bt709 | smpte2084 (PQ) | arib-std-b67 (HLG) ... | null
        ("hdr", pa.string()),  # pq | hlg | null (SDR)
        ("original_caption", pa.string()),
        ("spans", pa.list_(_span)),  # given spans from a list input (Panda-70M / OpenVid style)
        # lineage and rights, from list files and JSON sidecars (stages/ingest.py LINEAGE_COLUMNS); the clips and
        # kept views show each clip its video's
        ("source_url", pa.string()),
        ("license", pa.string()),
        ("license_id", pa.string()),  # its SPDX id when it is a Creative Commons licence (stages.ingest.license_id)
        ("creator", pa.string()),
        ("consent", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("probe_s", pa.float64()),
    ]
)

SHOTS = pa.schema(
    [
        ("video_id", pa.string()),
        ("detector", pa.string()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("scenes", pa.list_(_scene)),  # end_frame exclusive
        ("n_shots", pa.int32()),
        ("n_clips", pa.int32()),  # clip rows planned for this video (kept or not)
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("detect_s", pa.float64()),
        ("cut_s", pa.float64()),
    ]
)

CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("video_id", pa.string()),
        ("source_hash", pa.string()),
        ("clip_path", pa.string()),  # relative to OUT; null when the clip was not cut (rejected early or failed)
        ("shot_index", pa.int32()),
        ("start_frame", pa.int64()),  # in source frames, end exclusive
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("num_frames", pa.int64()),  # frames in the written clip
        ("fps", pa.float64()),  # of the written clip
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("clip_bytes", pa.int64()),
        ("original_caption", pa.string()),
        ("drop_reason", pa.string()),  # set at cut time: duration_short, error_clips:<Type>
        ("error", pa.string()),
        ("settings", pa.string()),  # JSON of the split/cut settings that went into clip_id
        # schema 21: px cut from each side with clips.crop_bars (of the upright picture at the output size, before
        # the crop); 0 where it found no bars, null where the option is off or the clip was not cut
        ("crop_top", pa.int32()),
        ("crop_bottom", pa.int32()),
        ("crop_left", pa.int32()),
        ("crop_right", pa.int32()),
    ]
)

# Tables a stage may write again for the same clip (recaptioning, rescoring) carry the time the row was stored;
# the views keep the latest row per clip_id.
_WRITTEN_AT = pa.field("written_at", pa.float64())

SCORES = _SCORES.append(_WRITTEN_AT)
CLIP_SCORES = _CLIP_SCORES.append(_WRITTEN_AT)
CAPTIONS = _CAPTIONS.append(_WRITTEN_AT)
TEXT_SCORES = _TEXT_SCORES.append(_WRITTEN_AT)

# Derived from the stored scores by the filters and dedup; replaced whole by `clipforge refilter`.
FILTERS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("drop_reason", pa.string()),  # first failing filter, or "duplicate"; null = kept
        ("duplicate_of", pa.string()),  # the kept copy it matches most nearly, for drop_reason = "duplicate"
        # schema 13: another clip of the same source whose overlay this one shows (stages/shared_overlay.py)
        ("overlay_seen_in", pa.string()),
        ("overlay_match", pa.float32()),  # the correlation with that clip's graphic (the best of its seeds')
        ("overlay_seeds", pa.string()),  # the clips it was matched against (comma-joined clip_ids)
        # schema 14: why the best match was not taken: chance, surround or moves (stages.shared_overlay.refusal)
        ("overlay_refused", pa.string()),
        ("overlay_error", pa.string()),  # why it could not be matched (its file unreadable)
    ]
)


def _catalogue_tables() -> dict[str, pa.Schema]:
    """The per-clip stage tables, from the stage catalogue (``stages.catalogue``), each with ``written_at``."""
    from stages.catalogue import stages

    return {s.name: s.resolve("schema").append(_WRITTEN_AT) for s in stages()}


TABLES: dict[str, pa.Schema] = {"videos": VIDEOS, "shots": SHOTS, "clips": CLIPS, "filters": FILTERS}
TABLES.update(_catalogue_tables())


def with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({METADATA_KEY: SCHEMA_VERSION.encode()})


def register(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Add the tables of the user's own stages (``stages.catalogue``; the config's ``stages`` list) to
    :data:`TABLES`, with ``written_at``; idempotent. Returns the user stages' table names, in order."""
    if not extra:
        return []
    from stages.catalogue import load

    names = []
    for ref in extra:
        stage = load(ref)
        if stage.name not in TABLES:
            TABLES[stage.name] = stage.resolve("schema").append(_WRITTEN_AT)
        names.append(stage.name)
    return names
