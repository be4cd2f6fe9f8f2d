"""The README's "Scoring and filtering from Python" block, run exactly as written on clips a user cut: a real shot is
kept, its mirror image is its duplicate, its defocused copy is blurry and a file that is not a video is a row with
its error."""

import os
import subprocess
import sys


def test_readme_python_scoring_block_runs_as_written(tmp_path, bikes, readme_block):
    from pipeline.defects import blur
    from pipeline.footage import BIKES_CUTS
    from pipeline.testdata import decode_frames, write_frames

    (tmp_path / "score.py").write_text(readme_block("### Scoring and filtering from Python", "python"))

    clips = tmp_path / "clips"
    clips.mkdir()
    shot = decode_frames(bikes, BIKES_CUTS[1], BIKES_CUTS[2])  # 61 frames of one shot, 640x272: 2.44 s at 25 fps
    write_frames(shot, clips / "a.mp4", fps=25)
    write_frames(shot[:, :, ::-1], clips / "b.mp4", fps=25)  # its mirror image
    write_frames(blur(shot, 2.5), clips / "c.mp4", fps=25)  # defocused, sigma 2.5 px at 640x360
    (clips / "d.mp4").write_bytes(b"not a video" * 100)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the installed packages, as a user's notebook has them
    res = subprocess.run(
        [sys.executable, "score.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    said = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert said == {
        "clips/a.mp4": "kept",
        "clips/b.mp4": "duplicate of clips/a.mp4",
        "clips/c.mp4": "quality_blurry",
        "clips/d.mp4": "error_scores",
    }, res.stdout
