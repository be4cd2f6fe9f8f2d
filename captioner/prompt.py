"""Versioned prompt files (captioner/prompts/<id>_<version>.txt).

A prompt file starts with ``# key: value`` header lines (id, version, kind, comments) followed by the prompt
text. The pair ``<id>_<version>`` (``Prompt.tag``) is stored with every caption, so a changed prompt is a new
file with a new version, never an edit of an old one: resume logic (``needs_caption``) compares tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).parent / "prompts"
_TAG_RE = re.compile(r"^(?P<id>[a-z0-9]+(?:-[a-z0-9]+)*)_(?P<version>v\d+)$")


@dataclass(frozen=True)
class Prompt:
    """One instruction for the VLM (or the text rewriter).

    id: what it asks for ("dense", "short", ...); version: "v1", "v2", ...; kind: "dense" | "short" | "rewrite";
    text: the instruction (rewrite prompts contain a ``{caption}`` placeholder).
    """

    id: str
    version: str
    text: str
    kind: str = "dense"

    @property
    def tag(self) -> str:
        """``<id>_<version>``: the string recorded with each caption (caption_prompt_version)."""
        return f"{self.id}_{self.version}"


def parse_prompt(raw: str, *, default_id: str = "custom", default_version: str = "v0") -> Prompt:
    """Parse a prompt file's text: ``# key: value`` header lines, then the prompt."""
    header: dict[str, str] = {}
    body: list[str] = []
    for line in raw.splitlines():
        if not body and line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() in {"id", "version", "kind"}:
                header[key.strip()] = value.strip()
            continue
        body.append(line)
    text = "\n".join(body).strip()
    if not text:
        raise ValueError("prompt file has no prompt text after its header")
    return Prompt(
        id=header.get("id", default_id),
        version=header.get("version", default_version),
        text=text,
        kind=header.get("kind", "dense"),
    )


def load_prompt(name_or_path: str | Path) -> Prompt:
    """Load a prompt by tag (``"dense_v1"``, from captioner/prompts/) or by a path to a prompt file.

    A file's header id/version win over its name; a file without a header takes them from a
    ``<id>_<version>.txt`` name.
    """
    path = Path(name_or_path)
    if not path.suffix and _TAG_RE.match(str(name_or_path)):
        path = PROMPT_DIR / f"{name_or_path}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"no prompt {name_or_path!r} in {PROMPT_DIR}; known: {list_prompts()}")
    elif not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found (give a tag like 'dense_v1' or a path)")
    m = _TAG_RE.match(path.stem)
    return parse_prompt(
        path.read_text(encoding="utf-8"),
        default_id=m["id"] if m else path.stem,
        default_version=m["version"] if m else "v0",
    )


def list_prompts() -> list[str]:
    """Tags of the prompts shipped in captioner/prompts/."""
    return sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
