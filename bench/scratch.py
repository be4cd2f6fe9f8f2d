"""Scratch directories for the benches' clips: made by ``tempfile.mkdtemp`` and removed when the bench's process
exits, normally or by an exception (``atexit``; a process killed by SIGKILL leaves its directory)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """A new empty directory under the system's temporary directory, named ``prefix`` + random; removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path
