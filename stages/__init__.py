"""The stage catalogue: one stage per file, in pipeline order. Each stage is a plain function or a Ray-callable
class whose docstring states Reads / Writes / Reasons. Stages never import pipeline/; pipeline/run.py applies
their resources (from each stage's config dataclass) at one visible call site.

A new filter: one file here, one line below, one test in tests/stages/.

Two modules here are infrastructure every stage shares, not stages: ``stages/media.py`` (all media I/O: which stream,
frame numbering and times from presentation timestamps, colour and aspect) and ``stages/resources.py`` (the thread
policy of Ray workers).
"""

CATALOGUE: dict[str, str] = {
    "ingest": "stages.ingest:expand_inputs",  # dirs, globs, list files, sidecar captions -> input rows
    "probe": "stages.probe:probe",  # one videos row per input file, failures included
    "shots": "stages.shots:detect",  # hybrid (default), content, adaptive; TransNetV2Detector (actor)
    "clips": "stages.clips:cut_clips",  # plan_clips + one-pass frame-accurate H.264 cut per video
    "frames": "stages.frames:read_frames",  # the frame sampler every pixel stage uses (decord, PyAV fallback)
    "scores": "stages.cpu_scores:CpuScorer",  # motion, frozen, sharpness, exposure, text area, pHash (one decode)
    "clip_scores": "stages.clip_scores:ClipScorer",  # open_clip embedding + LAION aesthetic (actor)
    "text_scores": "stages.clip_scores:ClipTextScorer",  # CLIP text-video match after captioning (actor)
    "filters": "stages.filters:apply_filters",  # drop reasons from stored scores, first failing wins
    "dedup": "stages.dedup:find_duplicates",  # dataset-wide exact + near duplicates (DuckDB LSH)
    "caption": "stages.caption:CaptionStage",  # VLM dense + short captions with QA (actor)
}
