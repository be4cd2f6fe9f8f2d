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
    from pipeline.report import write_report

    report = write_report(cfg.output)
    print(f"report: {report}")
    if args.train_steps > 0:
        train_and_sample(root, Path(cfg.output), args.train_steps)
    print()
    print("Try:")
    print(f'  clipforge query {cfg.output} "SELECT drop_reason, count(*) FROM clips GROUP BY ALL"')
    print(f'  clipforge query {cfg.output} "SELECT clip_id, duration_s, original_caption FROM kept LIMIT 5"')
    print(f"  clipforge view {cfg.output}")
    return 0


def train_and_sample(root: Path, dataset: Path, steps: int) -> None:
    """curate -> prepare -> train a tiny DiT for a few CPU-minutes -> sample: the whole path, small."""
    import time

    from pipeline import store
    from training.prepare import prepare
    from training.sample import sample
    from training.train import TrainConfig, train

    prepared, run_dir = root / "prepared", root / "dit"
    t0 = time.perf_counter()
    # captions: the VLM's when it ran, else the human-written originals (missing kinds drop out of the mix)
    manifest = prepare(dataset, "TRUE", None, "pixel", "minilm", {"dense": 0.6, "short": 0.3, "original": 0.1},
                       prepared)  # fmt: skip
    print(f"prepared {manifest['counts']} in {time.perf_counter() - t0:.0f}s -> {prepared}")
    t0 = time.perf_counter()
    result = train(TrainConfig(data=str(prepared), out=str(run_dir), model="tiny", patch=[1, 4, 4], batch_size=8,
                               lr=2e-3, max_steps=steps, ckpt_every=steps, log_every=max(1, steps // 10),
                               ema_decay=0.99))  # fmt: skip
    print(f"trained a tiny DiT for {steps} steps in {time.perf_counter() - t0:.0f}s -> {run_dir} ({result})")
    caption = store.query(dataset, "SELECT original_caption FROM kept WHERE original_caption IS NOT NULL LIMIT 1")
    prompt = caption.column(0)[0].as_py() if caption.num_rows else "a city street"
    video = root / "sample.mp4"
    sample(run_dir, prompt, steps=20, cfg=2.5, seed=0, out=video)
    print(f"sampled {video} for the prompt: {prompt!r}")
