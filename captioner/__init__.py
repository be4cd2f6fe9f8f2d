"""VLM recaptioning (the DALL-E 3 / Sora recipe), independent of Ray.

``load(model_id_or_path)`` -> ``Captioner``; ``Captioner.caption(frames_list, prompt)`` -> ``CaptionResult`` list.
Prompts are versioned files in captioner/prompts/ (``load_prompt("dense_v1")``); ``qa`` checks every caption;
``enhance`` holds the optional text-only rewrite / prompt upsampling LLM.
"""

from captioner.model import (
    DEFAULT_CPU_MODEL,
    DEFAULT_GPU_MODEL,
    Captioner,
    CaptionerUnavailable,
    CaptionResult,
    ClipFrames,
    Generation,
    captioner_available,
    default_model,
    load,
)
from captioner.prompt import Prompt, list_prompts, load_prompt

__all__ = [
    "DEFAULT_CPU_MODEL",
    "DEFAULT_GPU_MODEL",
    "CaptionResult",
    "Captioner",
    "CaptionerUnavailable",
    "ClipFrames",
    "Generation",
    "Prompt",
    "captioner_available",
    "default_model",
    "list_prompts",
    "load",
    "load_prompt",
]
