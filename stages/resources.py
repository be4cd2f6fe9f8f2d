"""One thread policy for every stage: a worker uses as many threads as the CPUs Ray gave it.

Ray schedules tasks and actors by their ``num_cpus``, but the libraries inside them size their own thread pools
from the machine's core count: on a 64-core node, 60 one-CPU actors each running OpenCV, torch, onnxruntime and
FFmpeg with 64 threads oversubscribe the node ~64x. Every Ray task and actor of the run therefore calls
:func:`limit_threads` with its ``num_cpus`` first (the call site is ``pipeline/run.py``'s stage wiring, and each
actor's ``__init__``):

- OpenCV: ``cv2.setNumThreads``;
- torch: ``torch.set_num_threads`` (only where torch is already imported: a stage that does not use it does not pay
  for importing it);
- OpenMP / BLAS pools started later: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``;
- onnxruntime and PyAV/FFmpeg take a thread count when a session or decoder is created: they read
  :func:`thread_budget` (``stages.media.open_video``'s default, the OCR session's ``intra_op_num_threads``).

Outside a worker (``clipforge scenes``, notebooks) nothing is limited and :func:`thread_budget` is None: libraries
keep their own defaults.
"""

from __future__ import annotations

import math
import os
import sys

_BUDGET: int | None = None


def limit_threads(cpus: float | None) -> int:
    """Limit this process's library thread pools to ``ceil(cpus)`` threads (at least 1); returns that number."""
    global _BUDGET
    n = max(1, math.ceil(cpus or 1))
    _BUDGET = n
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:  # a worker without OpenCV
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n


def thread_budget() -> int | None:
    """Threads this worker may use (set by :func:`limit_threads`), or None outside a limited worker."""
    return _BUDGET
