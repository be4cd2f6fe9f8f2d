"""The stages, one per file, in pipeline order. Each stage is a plain function or a Ray-callable class whose
docstring states Reads / Writes / Reasons. Stages never import pipeline/.

The per-clip stages declare themselves (``STAGE = stages.catalogue.Stage(...)``: table, config, schema, reads, filter
rules) and ``stages.catalogue`` is the wiring: the stored tables, the ``clips`` view, the config sections, the run's
graph, the filters (``refilter``) and the report's thresholds all follow from it. A new per-clip score with a filter
rule: one file here with its ``STAGE``, its reference in ``stages.catalogue.BUILTIN``, one test. A user's own stage
joins through the config's ``stages`` list without a change here (README, "Your own stage").

Three modules here are infrastructure every stage shares, not stages: ``stages/media.py`` (all media I/O: which
stream, frame numbering and times from presentation timestamps, colour and aspect), ``stages/resources.py`` (the
thread policy of Ray workers) and ``stages/settings.py`` (the typed base of every config section).

:data:`CATALOGUE` below names every stage's entry point, for readers and for the contract test.
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
