"""Shared fixtures: real sample footage, a scratch dir, and one local Ray for the session."""

from __future__ import annotations

import os

# A missing model must fail at once, never after hub retries; tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402

from pipeline.footage import sample_video  # noqa: E402


@pytest.fixture(scope="session")
def bikes():
    return sample_video("bikes")


@pytest.fixture(scope="session")
def bigbuckbunny():
    return sample_video("bigbuckbunny")


@pytest.fixture(scope="session")
def carphone():
    return sample_video("carphone")


@pytest.fixture(scope="session")
def transnet_test_video():
    return sample_video("transnet_test")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
