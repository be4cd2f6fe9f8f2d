"""One thread policy and autoscaling actor pools, applied at the pipeline's one call site, on real Ray."""

from __future__ import annotations

import sys

import pytest

from pipeline import config
from pipeline.steps import _actor_pool, _Limited


class ThreadReport:
    """A stand-in stage that reports the thread pools its worker ended up with (it imports torch, like the model
    stages, so the policy must reach torch imported by the stage itself)."""

    def __init__(self, cfg=None):
        import torch  # noqa: F401

    def __call__(self, batch):
        import cv2
        import torch

        from stages.media import open_video  # noqa: F401
        from stages.resources import thread_budget

        n = len(batch["id"])
        return {
            "cv2": [cv2.getNumThreads()] * n,
            "torch": [torch.get_num_threads()] * n,
            "budget": [thread_budget()] * n,
        }


def test_actors_limit_every_library_to_their_cpus(ray_local):
    import cv2
    import ray

    if (cv2.getNumThreads(), __import__("os").cpu_count()) == (1, 1):
        pytest.skip("a one-core machine cannot show a limit")
    ds = ray.data.range(4, override_num_blocks=2).map_batches(
        _Limited,
        fn_constructor_kwargs={"stage_cls": ThreadReport, "cpus": 1.0, "cfg": None},
        batch_size=2,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
    )
    rows = ds.take_all()
    assert rows and all((r["cv2"], r["torch"], r["budget"]) == (1, 1, 1) for r in rows)


def test_actor_pools_grow_from_min_to_max(ray_local):
    cfg = config.load(None, {"scores.min_actors": "1", "scores.max_actors": "1", "captioner.min_actors": "1"})
    pool = _actor_pool(cfg.ray, cfg.scores)
    assert (pool.min_size, pool.max_size) == (1, 1)
    # unset max: the cluster's CPUs minus the headroom Ray Data needs (2 - 1 here)
    cfg = config.load(None, {"scores.max_actors": "none"})
    pool = _actor_pool(cfg.ray, cfg.scores)
    assert pool.min_size == 1 and pool.max_size == max(1, int(ray_local.cluster_resources()["CPU"] - 1))


def test_toml_config_without_tomllib(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib: the config is read with tomli, the same parser."""
    toml = tmp_path / "c.toml"
    toml.write_text('[clips]\nmax_s = 7.5\n[shots]\ndetector = "content"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import tomllib now raises ImportError
    cfg = config.load(toml)
    assert (cfg.clips.max_s, cfg.shots.detector) == (7.5, "content")
