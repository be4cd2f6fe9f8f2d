"""CLIP scores: a video-level open_clip image embedding, a LAION aesthetic score, and text-video similarity.

- ``clip_embedding``: each sampled frame is embedded with the open_clip image tower and L2-normalised; the
  clip's embedding is the mean of those, re-normalised (so cosine = dot product), stored as list<float32>::

      e = normalize(mean_i normalize(encode_image(frame_i)))

- ``aesthetic``: the LAION "improved aesthetic predictor" head (github.com/christophschuhmann/
  improved-aesthetic-predictor, trained on SAC + LAION-Logos + AVA ratings of CLIP ViT-L/14 image embeddings)
  applied to ``e``. Architecture, exactly as trained so its released weights load with strict keys::

      layers = Sequential(Linear(d, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
                          Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1))
      aesthetic = layers(e)        # eval mode: dropouts are identity, so this is one affine map of e

  No non-linearities (the released "linearMSE" model has none). Output is roughly a 1-10 rating (AVA scale).
  The original predictor scores one image's normalised embedding; here ``e`` is the clip's normalised mean.
- ``clip_text_score(embeddings, texts)``: cosine between stored clip embeddings and caption texts, for after
  captioning (caption-video agreement).

Weights. CLIP loads from an open_clip model name + pretrained tag (``ViT-L-14`` + ``openai``), a name + local
checkpoint file (``pretrained=/path/model.safetensors``), an ``hf-hub:org/repo`` id, or a local directory holding
``open_clip_config.json`` + weights (``model=/path/dir``, open_clip's ``local-dir:``). The aesthetic head
(``aesthetic_head``) is a local ``.pth``/``.safetensors`` state dict or a Hugging Face file reference
``hf://org/repo[@revision]/path/in/repo``; the default, :data:`DEFAULT_AESTHETIC_HEAD`, is the released
``sac+logos+ava1-l14-linearMSE`` weights (for ViT-L-14, 768-d) as safetensors, at the commit NVIDIA's video
curation pipelines (Cosmos-Curate, NeMo Curator) pin. ``aesthetic_head=None`` turns the score, and with it the
``filters.min_aesthetic`` filter, off; :func:`clip_available` and :func:`aesthetic_off_note` then say so.

Hub files come from the Hugging Face cache when they are there (HF_HOME; nothing is asked of the network), else
they are downloaded once into it where the hub (HF_ENDPOINT) answers. When the hub is off (HF_HUB_OFFLINE=1) or
does not answer one quick request (:data:`HUB_PROBE_TIMEOUT_S`), a missing file is a :class:`ClipUnavailable`
within seconds, naming the model and how to provide it, instead of huggingface_hub's minute of retries. This
module never scores with random weights. The pipeline calls :func:`clip_available` once and disables the CLIP
stage and the filters that need it (aesthetic_low) when it returns False.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from stages import storage
from stages.errors import raise_if_environment
from stages.settings import Settings

CLIP_SCORES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("clip_embedding", pa.list_(pa.float32())),  # L2-normalised mean of normalised frame embeddings
        ("aesthetic", pa.float32()),  # LAION improved-aesthetic-predictor, ~1-10; null without a head
        ("clip_model", pa.string()),  # which model made the embedding ("ViT-L-14/openai", a path, ...)
        ("error_clip_scores", pa.string()),  # "error_clip_scores:<ExceptionType>: message" or null
    ]
)


class ClipUnavailable(RuntimeError):
    """The configured CLIP model or aesthetic head cannot be loaded (weights missing, offline, bad path)."""


# LAION improved-aesthetic-predictor, sac+logos+ava1-l14-linearMSE (for CLIP ViT-L-14, 768-d), as safetensors with
# the keys of the released .pth, pinned to the commit NVIDIA's Cosmos-Curate (configs/all_models.json) and NeMo
# Curator use; safetensors, so loading it runs no pickle, and a pinned commit cannot change under a dataset. The
# original .pth loads the same way (same keys), e.g. from a local file or a hub copy such as
# hf://camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth.
DEFAULT_AESTHETIC_HEAD = (
    "hf://ttj/sac-logos-ava1-l14-linearMSE@1e77fa05081323d99725fc40a9bf9f88180490e7/model.safetensors"
)
HF_REF_PREFIX = "hf://"
# One request, no retries, to learn whether the hub answers before a download: huggingface_hub retries connection
# errors with backoff (~23 s per file), right for a flaky link but a minute of waiting on a machine without one.
HUB_PROBE_TIMEOUT_S = 3.0
HF_CACHE_HINT = (
    "copy the Hugging Face cache (HF_HOME, default ~/.cache/huggingface) to this machine or point HF_HOME at a copy"
)


@dataclass
class ClipScoresConfig(Settings):
    """CLIP stage settings.

    model: open_clip model name ("ViT-L-14"), "hf-hub:org/repo", or a local directory with open_clip_config.json
        and weights (open_clip_model.safetensors / open_clip_pytorch_model.bin ...).
    pretrained: open_clip pretrained tag ("openai", "laion2b_s32b_b82k") or a checkpoint file path, used with a
        model NAME; ignored for directories and hf-hub ids.
    aesthetic_head: the improved-aesthetic-predictor weights matching the model's embedding width: a local
        .pth / .safetensors file, or ``hf://org/repo[@revision]/file`` (a file on the Hugging Face hub, cached in
        HF_HOME). Default: DEFAULT_AESTHETIC_HEAD, the LAION sac+logos+ava1-l14-linearMSE head for ViT-L-14.
        None: no aesthetic score, and the aesthetic filter (filters.min_aesthetic) is OFF (the run says so).
    """

    root: str | None = None  # dataset dir OUT; clip_path is relative to it
    enabled: bool = True  # False: no CLIP stage (and no aesthetic filter)
    model: str = "ViT-L-14"
    pretrained: str | None = "openai"
    aesthetic_head: str | None = DEFAULT_AESTHETIC_HEAD
    num_frames: int = 4  # frames embedded per clip (evenly spaced); CLIP barely changes within a shot
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads (None: torch default)
    backend: str = "auto"  # stages.frames.read_frames backend
    # Ray resources the pipeline applies to this stage
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 16
    min_actors: int = 1  # actor pool: grows from min to max (None: the cluster's CPUs minus ray.headroom_cpus)
    max_actors: int | None = None


def _is_dir(p: str | None) -> bool:
    return bool(p) and not str(p).startswith("hf-hub:") and Path(str(p)).expanduser().is_dir()


def model_label(cfg: ClipScoresConfig) -> str:
    """Human/provenance label of the configured model: "ViT-L-14/openai", "/path/dir", "hf-hub:org/repo"."""
    if _is_dir(cfg.model) or str(cfg.model).startswith("hf-hub:"):
        return str(cfg.model)
    return f"{cfg.model}/{cfg.pretrained}"


# ---- Hugging Face hub files: the cache first, then one quick probe, then one download ----


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the hub endpoint (HF_ENDPOINT, default https://huggingface.co) answers one HEAD request within
    ``timeout`` seconds (any HTTP status counts); otherwise why not. Goes through huggingface_hub's own HTTP client,
    so proxies and a custom client factory apply as they would to the download."""
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - DNS failure, refused, timeout, proxy, TLS: all mean "no hub here"
        return f"{constants.ENDPOINT} did not answer ({type(e).__name__}: {str(e)[:160]})"
    return None


def hub_file(repo_id: str, filenames: list[str], revision: str | None = None, *, what: str, how: str) -> str:
    """Local path of the first of ``filenames`` found in hub model repo ``repo_id`` (at ``revision``).

    From the Hugging Face cache when it is there (no network); else, unless the hub is off (HF_HUB_OFFLINE) or does
    not answer :func:`hub_unreachable`'s probe, downloaded once into the cache. Otherwise raises ClipUnavailable
    (``what`` + why + ``how``) within seconds.
    """
    from huggingface_hub import constants, errors, hf_hub_download

    for name in filenames:
        try:
            return hf_hub_download(repo_id, name, revision=revision, local_files_only=True)
        except Exception:  # noqa: BLE001 - any cache miss means "not cached"
            pass
    src = f"{repo_id}{'@' + revision if revision else ''}/{' or '.join(filenames)}"
    where = f"not found in the local Hugging Face cache ({constants.HF_HUB_CACHE}),"
    if hub_offline():
        raise ClipUnavailable(f"{what} ({src}) {where} and the hub is off (HF_HUB_OFFLINE=1). {how}")
    why = hub_unreachable()
    if why:
        raise ClipUnavailable(f"{what} ({src}) {where} and the hub is unreachable: {why}. {how}")
    not_there = tuple(
        t for t in (getattr(errors, "RemoteEntryNotFoundError", None), errors.EntryNotFoundError) if t is not None
    )
    for name in filenames:
        try:
            return hf_hub_download(repo_id, name, revision=revision)
        except Exception as e:
            # LocalEntryNotFoundError is an EntryNotFoundError too, but means "no connection", not "no such file"
            if isinstance(e, not_there) and not isinstance(e, errors.LocalEntryNotFoundError):
                continue  # the hub has no such file: the next candidate name (e.g. .bin after .safetensors)
            # unknown repo or revision, gated, network dropped mid-way
            raise ClipUnavailable(f"{what} ({src}) could not be downloaded ({type(e).__name__}: {e}). {how}") from e
    raise ClipUnavailable(f"{what}: the hub repo {repo_id} has no {' or '.join(filenames)}. {how}")


def parse_hf_ref(ref: str) -> tuple[str, str | None, str]:
    """``hf://org/repo[@revision]/path/in/repo`` -> (repo_id, revision or None, path in repo). A model repo; the
    revision is a branch, tag or commit without slashes."""
    parts = str(ref)[len(HF_REF_PREFIX) :].split("/") if str(ref).startswith(HF_REF_PREFIX) else []
    repo, _, revision = parts[1].partition("@") if len(parts) >= 3 else ("", "", "")
    if len(parts) < 3 or not all(parts) or not repo or ("@" in parts[1] and not revision):
        raise ClipUnavailable(f"{ref!r} is not a hub file reference: expected hf://org/repo[@revision]/file")
    return f"{parts[0]}/{repo}", revision or None, "/".join(parts[2:])


# ---- CLIP weights ----


def _how_to_provide(cfg: ClipScoresConfig) -> str:
    return (
        "Provide weights in one of these ways: put them in the Hugging Face cache on a connected machine "
        f"(python -c \"import open_clip; open_clip.create_model('{cfg.model}', pretrained='{cfg.pretrained}')\") "
        f"and {HF_CACHE_HINT}; or set clip.pretrained to a local checkpoint file for this model name; or "
        "set clip.model to a directory with open_clip_config.json + open_clip_model.safetensors. Or disable the "
        "CLIP stage (clip.enabled: false); the aesthetic filter is then skipped."
    )


def _hub_weight_names(filename: str) -> list[str]:
    """open_clip's order: a .safetensors twin of the weights file first, then the file itself."""
    from open_clip.pretrained import _get_safe_alternatives, _has_safetensors

    names = list(_get_safe_alternatives(filename)) if _has_safetensors else []
    return names + [filename] if filename not in names else names


def resolve_weights(cfg: ClipScoresConfig) -> str:
    """Local path of the CLIP weights the config points to, without building the model.

    Downloads them once (into the HF cache) when they are not cached and the hub answers. Raises ClipUnavailable
    with a clear message when they cannot be had (offline or unreachable hub and not cached, unknown tag, missing
    file, directory without weights or config) - in seconds, never after a minute of retries.
    """
    import open_clip
    from open_clip.factory import _find_checkpoint_in_dir
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME, download_pretrained, get_pretrained_cfg

    label = model_label(cfg)
    if _is_dir(cfg.model):
        d = Path(cfg.model).expanduser()
        if not (d / "open_clip_config.json").is_file():
            raise ClipUnavailable(f"CLIP model dir {d} has no open_clip_config.json. {_how_to_provide(cfg)}")
        ckpt = _find_checkpoint_in_dir(d)
        if not ckpt:
            raise ClipUnavailable(
                f"CLIP model dir {d} has no weights (*.safetensors/*.bin/*.pth). {_how_to_provide(cfg)}"
            )
        return ckpt
    if str(cfg.model).startswith("hf-hub:"):
        repo = str(cfg.model)[len("hf-hub:") :]
        what, how = f"CLIP {label}", _how_to_provide(cfg)
        hub_file(repo, ["open_clip_config.json"], what=what, how=how)  # open_clip reads it too: cache it now
        return hub_file(repo, [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME], what=f"CLIP weights for {label}", how=how)
    name = str(cfg.model).replace("/", "-")
    if name not in open_clip.list_models():
        raise ClipUnavailable(
            f"unknown open_clip model {cfg.model!r} (not a directory either). {_how_to_provide(cfg)}"
        )
    if not cfg.pretrained:
        raise ClipUnavailable(f"no pretrained weights configured for CLIP model {cfg.model!r}. {_how_to_provide(cfg)}")
    if Path(str(cfg.pretrained)).expanduser().is_file():
        return str(Path(str(cfg.pretrained)).expanduser())
    tag_cfg = get_pretrained_cfg(name, str(cfg.pretrained))
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(name)
        raise ClipUnavailable(
            f"{cfg.pretrained!r} is neither a checkpoint file nor a pretrained tag of {cfg.model} (tags: {known}). "
            + _how_to_provide(cfg)
        )
    if tag_cfg.get("hf_hub"):  # every open_clip tag today; the same repo and file names open_clip would fetch
        repo, filename = os.path.split(str(tag_cfg["hf_hub"]))
        names = _hub_weight_names(filename or HF_WEIGHTS_NAME)
        return hub_file(repo, names, what=f"CLIP weights for {label}", how=_how_to_provide(cfg))
    if hub_offline():  # a URL-only tag: the hub switch is the user's "no downloads" switch too
        raise ClipUnavailable(f"CLIP weights for {label}: HF_HUB_OFFLINE=1 forbids downloads. {_how_to_provide(cfg)}")
    try:
        path = download_pretrained(tag_cfg)
    except Exception as e:
        raise ClipUnavailable(
            f"CLIP weights for {label} are not available locally ({type(e).__name__}). {_how_to_provide(cfg)}"
        ) from e
    if not path:
        raise ClipUnavailable(f"CLIP weights for {label} could not be located. {_how_to_provide(cfg)}")
    return path


def _model_embed_dim(cfg: ClipScoresConfig) -> int | None:
    """The configured model's embedding width from its config (no model built); None when unknown."""
    import open_clip

    try:
        if _is_dir(cfg.model) or str(cfg.model).startswith("hf-hub:"):
            if _is_dir(cfg.model):
                path = Path(cfg.model).expanduser() / "open_clip_config.json"
            else:  # cached by resolve_weights
                repo = str(cfg.model)[len("hf-hub:") :]
                path = Path(hub_file(repo, ["open_clip_config.json"], what=str(cfg.model), how=""))
            return int(json.loads(path.read_text())["model_cfg"]["embed_dim"])
        return int(open_clip.get_model_config(str(cfg.model).replace("/", "-"))["embed_dim"])
    except Exception:  # noqa: BLE001 - the scorer checks the real width when it loads
        return None


# ---- the aesthetic head ----


def _how_to_provide_head(ref: str) -> str:
    if str(ref).startswith(HF_REF_PREFIX):
        repo, revision, filename = parse_hf_ref(ref)
        fetch = f"on a connected machine run `hf download {repo} {filename}"
        fetch += f" --revision {revision}` " if revision else "` "
        fetch += f"(or any clipforge run there) and {HF_CACHE_HINT}; or "
    else:
        fetch = ""
    return (
        f"Provide the improved-aesthetic-predictor weights: {fetch}set clip.aesthetic_head to a local "
        ".pth/.safetensors file or another hf://org/repo[@revision]/file; or set clip.aesthetic_head to none to score "
        "without it (then no aesthetic score, and the aesthetic filter filters.min_aesthetic is OFF)."
    )


def resolve_aesthetic_head(ref: str | os.PathLike) -> str:
    """Local path of the aesthetic head weights: ``ref`` itself when a local file, or the cached (else downloaded
    once) hub file of an ``hf://org/repo[@revision]/file`` reference. ClipUnavailable, in seconds, when neither."""
    if str(ref).startswith(HF_REF_PREFIX):
        repo, revision, filename = parse_hf_ref(str(ref))
        return hub_file(repo, [filename], revision, what=f"aesthetic head {ref}", how=_how_to_provide_head(str(ref)))
    p = Path(ref).expanduser()
    if not p.is_file():
        raise ClipUnavailable(f"aesthetic head weights not found at {p}. {_how_to_provide_head(str(ref))}")
    return str(p)


def aesthetic_off_note(cfg: ClipScoresConfig) -> str | None:
    """The line a run prints when CLIP runs without an aesthetic head (so filters.min_aesthetic does nothing)."""
    if not cfg.enabled or cfg.aesthetic_head:
        return None
    return (
        "AESTHETIC FILTER OFF: clip.aesthetic_head is none, so clips get no aesthetic score and filters.min_aesthetic "
        f"is not applied (set clip.aesthetic_head, e.g. to the default {DEFAULT_AESTHETIC_HEAD}, to turn it on)"
    )


def clip_available(cfg: ClipScoresConfig) -> tuple[bool, str]:
    """Whether the CLIP stage can run with real weights, and a one-line message for the run log.

    Locates (and where needed downloads once) the CLIP weights and the aesthetic head and loads the head, checking
    its width against the model's; does not build the CLIP model. Fails in seconds offline. Call once per run; when
    False, skip the CLIP stage and the filters that need it (aesthetic_low), and print the message. When True
    without a head, the message says loudly that the aesthetic filter is off.
    """
    try:
        weights = resolve_weights(cfg)
    except ClipUnavailable as e:
        return False, f"CLIP scoring disabled: {e}"
    msg = f"CLIP scoring on: {model_label(cfg)} (weights {weights})"
    if not cfg.aesthetic_head:
        return True, f"{msg}; {aesthetic_off_note(cfg) or 'no aesthetic head'}"
    try:
        load_aesthetic_head(cfg.aesthetic_head, _model_embed_dim(cfg))
        head = resolve_aesthetic_head(cfg.aesthetic_head)  # cached by now: no network
    except ClipUnavailable as e:
        return False, f"CLIP scoring disabled: {e}"
    hub = f"{cfg.aesthetic_head} = " if str(cfg.aesthetic_head).startswith(HF_REF_PREFIX) else ""
    return True, f"{msg}; aesthetic head {hub}{head} (filters.min_aesthetic applies)"


def load_clip(cfg: ClipScoresConfig) -> tuple[Any, Any, Any]:
    """(model in eval mode, image preprocess, tokenizer) for the config; ClipUnavailable if weights are missing.

    require_pretrained=True: open_clip itself refuses to return a randomly initialised model.
    """
    import open_clip

    resolve_weights(cfg)  # clear error first, before open_clip's own (less specific) one; files now cached
    if _is_dir(cfg.model):
        name, pretrained = f"local-dir:{Path(cfg.model).expanduser()}", None
    else:
        name, pretrained = str(cfg.model), (None if str(cfg.model).startswith("hf-hub:") else cfg.pretrained)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=cfg.device, require_pretrained=True
        )
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:
        raise ClipUnavailable(f"could not load CLIP {model_label(cfg)}: {type(e).__name__}: {e}") from e
    model.eval()
    return model, preprocess, tokenizer


def _aesthetic_mlp(input_size: int):
    import torch.nn as nn

    class AestheticMLP(nn.Module):
        """improved-aesthetic-predictor head (see module docstring); key names match the released weights."""

        def __init__(self, d: int):
            super().__init__()
            self.input_size = d
            self.layers = nn.Sequential(
                nn.Linear(d, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x):
            return self.layers(x)

    return AestheticMLP(input_size)


def aesthetic_head(input_size: int):
    """A fresh (untrained) aesthetic head module, e.g. to train one or to build test fixtures."""
    return _aesthetic_mlp(input_size)


def load_aesthetic_head(ref: str | os.PathLike, embed_dim: int | None = None):
    """Load improved-aesthetic-predictor weights (.pth/.pt state dict or .safetensors) into the head, strictly.

    ``ref``: a local file or an ``hf://org/repo[@revision]/file`` reference (see :func:`resolve_aesthetic_head`);
    both load through this same code. The input width comes from the weights (layers.0.weight); it must equal
    the CLIP embedding width ``embed_dim``.
    """
    import torch

    p = Path(resolve_aesthetic_head(ref))
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    if "layers.0.weight" not in state:
        raise ClipUnavailable(f"{ref} is not an improved-aesthetic-predictor state dict (no layers.0.weight)")
    d = int(state["layers.0.weight"].shape[1])
    if embed_dim is not None and d != embed_dim:
        raise ClipUnavailable(
            f"aesthetic head {ref} expects {d}-d CLIP embeddings but the CLIP model gives {embed_dim}-d "
            "(the LAION head is for ViT-L-14: 768-d); set clip.aesthetic_head to a head for this model, or to none"
        )
    head = _aesthetic_mlp(d)
    head.load_state_dict(state, strict=True)
    return head.eval()


class ClipScorer:
    """CLIP image embedding + aesthetic score per clip; text-video similarity after captioning.

    Reads: clip_id, clip_path (relative to OUT), num_frames (else probed)
    Writes: clip_embedding (list<float32>), aesthetic, clip_model, error_clip_scores
    Reasons: none (scores only; filters: aesthetic_low, error_clip_scores)

    Raises ClipUnavailable in __init__ when weights are missing (never falls back to random weights); a clip
    that fails to decode gets ``error_clip_scores = "error_clip_scores:<Type>: message"`` and null scores.
    """

    def __init__(self, cfg: ClipScoresConfig | None = None, root: str | os.PathLike | None = None):
        import torch

        self.cfg = cfg or ClipScoresConfig()
        root = root if root is not None else self.cfg.root
        self.root = storage.location(root) if root is not None else None  # local directory or bucket prefix
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        self.model, self.preprocess, self.tokenizer = load_clip(self.cfg)
        self.label = model_label(self.cfg)
        self.head = (
            load_aesthetic_head(self.cfg.aesthetic_head, self._embed_width()) if self.cfg.aesthetic_head else None
        )
        size = getattr(self.model.visual, "image_size", 224)
        self.decode_size = int(size[0] if isinstance(size, (tuple, list)) else size)

    def _embed_width(self) -> int:
        import torch

        with torch.no_grad():
            return int(self.model.encode_image(torch.zeros(1, 3, *self._image_hw())).shape[-1])

    def _image_hw(self) -> tuple[int, int]:
        size = getattr(self.model.visual, "image_size", 224)
        return tuple(size) if isinstance(size, (tuple, list)) else (size, size)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (D,) float32: mean of L2-normalised frame embeddings, re-normalised."""
        import torch
        from PIL import Image

        x = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames]).to(self.cfg.device)
        with torch.no_grad():
            e = self.model.encode_image(x).float()
        e = torch.nn.functional.normalize(e, dim=-1).mean(0)
        return torch.nn.functional.normalize(e, dim=0).cpu().numpy().astype(np.float32)

    def aesthetic(self, embedding: np.ndarray) -> float | None:
        """Aesthetic score of one normalised embedding (None without a head)."""
        import torch

        if self.head is None:
            return None
        with torch.no_grad():
            return float(self.head(torch.from_numpy(np.asarray(embedding, np.float32))[None]).item())

    def clip_text_score(self, embeddings: np.ndarray | list, texts: list[str]) -> np.ndarray:
        """Cosine similarity of each stored clip embedding with its text (row i with texts[i]); float32 (N,).

        Embeddings must come from this same model (their width is checked). A null embedding gives NaN.
        """
        import torch

        if len(embeddings) != len(texts):
            raise ValueError(f"{len(embeddings)} embeddings but {len(texts)} texts")
        out = np.full(len(texts), np.nan, np.float32)
        idx = [i for i, e in enumerate(embeddings) if e is not None and len(e)]
        if not idx:
            return out
        v = torch.tensor(np.stack([np.asarray(embeddings[i], np.float32) for i in idx]))
        with torch.no_grad():
            t = self.model.encode_text(self.tokenizer([str(texts[i]) for i in idx]).to(self.cfg.device)).float()
        if t.shape[-1] != v.shape[-1]:
            raise ValueError(f"embeddings are {v.shape[-1]}-d but {self.label} text features are {t.shape[-1]}-d")
        v = torch.nn.functional.normalize(v, dim=-1)
        t = torch.nn.functional.normalize(t, dim=-1)
        out[idx] = (v * t.cpu()).sum(-1).numpy()
        return out

    def score_clip(self, path: str | os.PathLike, num_frames: int | None = None) -> dict[str, Any]:
        from stages.frames import read_frames, sample_indices, video_meta

        if not num_frames:
            num_frames = int(video_meta(path)["num_frames"])
        idx = sample_indices(int(num_frames), self.cfg.num_frames)
        frames = read_frames(path, idx, size=self.decode_size, backend=self.cfg.backend)
        emb = self.embed_frames(frames)
        return {"clip_embedding": emb.tolist(), "aesthetic": self.aesthetic(emb)}

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Score a batch; returns a pyarrow Table with exactly CLIP_SCORES_SCHEMA (typed nulls on failure)."""
        rows = []
        for i in range(len(batch["clip_id"])):
            rel = batch["clip_path"][i] if "clip_path" in batch else None
            row: dict[str, Any] = {"clip_id": str(batch["clip_id"][i]), "clip_model": self.label}
            if rel is not None and not (isinstance(rel, float) and math.isnan(rel)):
                path = storage.under(self.root, str(rel))
                nf = batch["num_frames"][i] if "num_frames" in batch else None
                try:
                    row.update(self.score_clip(path, int(nf) if nf is not None and nf == nf else None))
                except Exception as e:  # errors are data
                    raise_if_environment(e, f"CLIP scores of {path}")
                    msg = str(e).replace("\n", " ")[:500]
                    row["error_clip_scores"] = f"error_clip_scores:{type(e).__name__}: {msg}"
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=CLIP_SCORES_SCHEMA)


# The `text_scores` table: CLIP text-video match of a clip's caption (pipeline/schema.py assembles it).
TEXT_SCORES_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("clip_text_score", pa.float32()),  # cosine of the clip embedding and the caption's text embedding
        ("text_column", pa.string()),  # which caption was scored (caption_dense, caption_short, original_caption)
        ("clip_model", pa.string()),
    ]
)


class ClipTextScorer:
    """CLIP text-video match after captioning: the stored clip embedding against the caption's text embedding.

    Reads: clip_id, clip_embedding, text (the caption to score), text_column
    Writes: clip_text_score, text_column, clip_model
    Reasons: none (scores only)

    Loads the same CLIP as ClipScorer (weights required, never random); embeddings from another model are refused.
    """

    def __init__(self, cfg: ClipScoresConfig | None = None):
        self.scorer = ClipScorer(dataclasses.replace(cfg or ClipScoresConfig(), aesthetic_head=None))

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        ids = list(batch["clip_id"])
        texts = [str(t) for t in batch["text"]]
        embeddings = [None if e is None else np.asarray(e, np.float32) for e in batch["clip_embedding"]]
        scores = self.scorer.clip_text_score(embeddings, texts)
        return pa.table(
            {
                "clip_id": ids,
                "clip_text_score": pa.array(scores, pa.float32()),
                "text_column": [str(c) for c in batch["text_column"]],
                "clip_model": [self.scorer.label] * len(ids),
            },
            schema=TEXT_SCORES_SCHEMA,
        )


def _stages():
    from stages.catalogue import Rule, Stage
    from stages.filters import AESTHETIC_LOW, ERROR_CLIP_SCORES

    scores = Stage(
        name="clip_scores",
        stage="stages.clip_scores:ClipScorer",
        config="stages.clip_scores:ClipScoresConfig",
        schema="stages.clip_scores:CLIP_SCORES_SCHEMA",
        rules=(
            Rule(ERROR_CLIP_SCORES, "error_clip_scores", "notnull"),
            Rule(AESTHETIC_LOW, "aesthetic", "<", "filters.min_aesthetic"),
        ),
    )
    text = Stage(
        name="text_scores",
        stage="stages.clip_scores:ClipTextScorer",
        config="stages.clip_scores:ClipScoresConfig",
        schema="stages.clip_scores:TEXT_SCORES_SCHEMA",
        reads={
            "clip_id": "clips.clip_id",
            "clip_embedding": "clip_scores.clip_embedding",
            "text": "captions.caption_dense",
        },
    )
    return scores, text


# the catalogue entries (stages/catalogue.py): CLIP scores before the filters, the text match after captioning
STAGE, TEXT_STAGE = _stages()
