"""Expand what the user named (directories, globs, files, list files) into one row per input video.

Nothing named is dropped silently: a missing file, a glob that matches nothing, a missing path inside a
list file or an unsupported URI becomes a row with ``input_error`` set, which the probe turns into a
``videos`` row with status "error". The output is deterministic (directory and glob matches sorted) and
each file appears once however many inputs reach it.

List files (named explicitly as inputs):

- ``.txt``: one path per line; blank lines and ``#`` comments are skipped.
- ``.csv`` / ``.tsv`` / ``.parquet`` / ``.jsonl``: a path column (``path``, ``video``, ``file``, ``filepath``,
  ``video_path``); optional span columns ``start_s``/``end_s`` (or ``start``/``end``; seconds or
  ``[HH:]MM:SS[.mmm]``) or a Panda-70M style ``timestamp`` column (``"[['0:00:01.000', '0:00:04.500'], ...]"``,
  with a ``caption`` column holding a list of the same length); optional ``caption``/``text``.
  Rows with spans become the video's ``spans`` (several rows of one video are merged, in order); a caption
  on a row without a span becomes ``original_caption``.

Object storage (``s3://``, ``gs://``, ``az://`` ... through fsspec, ``stages.storage``) takes the same forms: a
prefix is walked, a glob matched, an object taken, a list file read, and list files may name URIs. A scheme without
an installed filesystem package is an ``UnsupportedURI`` row naming the package.

Relative paths in a list file resolve against the list file's directory (or prefix). Sidecar captions next to a video
(``<video>.txt``, ``<stem>.txt``, ``<stem>.json`` or yt-dlp's ``<stem>.info.json`` with a
caption/text/description/title key) fill ``original_caption`` when the list file gave none.

Lineage and rights (:data:`LINEAGE_COLUMNS`): a list row or a JSON sidecar may carry ``source_url``, ``license``,
``creator``, ``consent`` and ``tags`` (aliases in :data:`LINEAGE_ALIASES`, e.g. yt-dlp's ``webpage_url`` and
``uploader``); they land in the ``videos`` table and every clip shows its video's through the ``clips``/``kept`` views
and every export. A list file's value wins over a sidecar's, field by field.
"""

from __future__ import annotations

import ast
import csv
import glob
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stages import storage
from stages.errors import raise_if_environment
from stages.settings import Settings

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
LIST_EXTENSIONS = (".txt", ".csv", ".tsv", ".parquet", ".jsonl")
PATH_COLUMNS = ("path", "video", "file", "filepath", "video_path")
CAPTION_COLUMNS = ("caption", "text")
SIDECAR_JSON_KEYS = ("caption", "text", "description", "title")
# provenance and rights of an input, from list files and JSON sidecars (pipeline/schema.py VIDEOS has the same names)
LINEAGE_COLUMNS = ("source_url", "license", "creator", "consent", "tags")
# column / key names read for each, first present wins (webpage_url, uploader, channel: yt-dlp's .info.json keys)
LINEAGE_ALIASES = {
    "source_url": ("source_url", "url", "webpage_url", "original_url"),
    "license": ("license", "licence"),
    "creator": ("creator", "author", "uploader", "channel", "artist"),
    "consent": ("consent",),
    "tags": ("tags", "tag"),
}
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class IngestConfig(Settings):
    """How inputs expand. extensions: what a directory walk or glob takes (case-insensitive).
    follow_symlinks: walk into symlinked directories and take symlinked files during walks (a file named
    explicitly is always taken). sidecar_captions: read sidecars next to each video: <video>.txt / <stem>.txt /
    <stem>.json / <stem>.info.json captions, and the JSON ones' lineage fields (:data:`LINEAGE_COLUMNS`). drop_hdr:
    exclude HDR sources (PQ or HLG transfer) from the run: their videos row says ``error_type="HDRExcluded"``; by
    default they are kept and their clips stay HDR (10-bit, with the source's colour tags)."""

    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    follow_symlinks: bool = True
    sidecar_captions: bool = True
    drop_hdr: bool = False
    num_cpus: float = 1.0  # CPUs of each probe (and planning hash) task
    memory_mb: int = 1024  # memory Ray reserves for each probe task


def expand_inputs(inputs: list[str], cfg: IngestConfig | None = None) -> list[dict]:
    """Expand directories, globs, video files and list files into ingest rows.

    Reads: the file system (and list files' contents)
    Writes: rows {"path": absolute path, "original_caption": str | None, "spans": list | None,
        "input_error": str | None, and each of LINEAGE_COLUMNS: str | None (tags: list[str] | None)}
    Reasons: input_error "FileNotFoundError: ...", "UnsupportedURI: ...", "NoVideoFiles: ..." (a named
        directory without videos), "ValueError: ..." (an unreadable list file or a bad row in it)
    """
    cfg = cfg or IngestConfig()
    exts = tuple(e.lower() for e in cfg.extensions)
    rows: dict[str, dict] = {}  # key: real path (so the same file via two inputs or a symlink is one row)
    for item in inputs:
        for row in _expand_one(str(item), exts, cfg):
            _merge(rows, row)
    out = list(rows.values())
    if cfg.sidecar_captions:
        listings: dict[str, set[str]] = {}
        for row in out:
            missing = row["original_caption"] is None or any(row[k] is None for k in LINEAGE_COLUMNS)
            if missing and row["input_error"] is None:
                listing = _prefix_listing(row["path"], listings) if storage.is_uri(row["path"]) else None
                caption, lineage = read_sidecars(row["path"], listing)
                if row["original_caption"] is None:
                    row["original_caption"] = caption
                for k, v in lineage.items():
                    if row[k] is None:
                        row[k] = v
    return out


def _prefix_listing(uri: str, cache: dict[str, set[str]]) -> set[str]:
    """Object URIs directly under ``uri``'s prefix, listed once per prefix (an unlistable prefix: empty)."""
    prefix = storage.dirname(uri)
    if prefix not in cache:
        try:
            fs, p = storage.filesystem(prefix)
            cache[prefix] = {storage.full_uri(fs, q, uri) for q in fs.ls(p, detail=False)}
        except Exception as e:  # noqa: BLE001 - no sidecars then; a dead store still stops the run
            raise_if_environment(e, f"listing {prefix}")
            cache[prefix] = set()
    return cache[prefix]


def _row(
    path: str,
    *,
    caption: str | None = None,
    spans: list | None = None,
    error: str | None = None,
    lineage: dict[str, Any] | None = None,
) -> dict:
    row = {"path": path, "original_caption": caption, "spans": spans, "input_error": error}
    row.update(dict.fromkeys(LINEAGE_COLUMNS))
    row.update(lineage or {})
    return row


def lineage_of(rec: dict[str, Any]) -> dict[str, Any]:
    """The lineage fields of one list row or JSON sidecar (keys lower-cased), by :data:`LINEAGE_ALIASES`: strings
    stripped (a bool ``consent`` becomes "true"/"false"), ``tags`` a list of strings (a list, a JSON list, or text
    split on ``;`` or, without one, on ``,``). Absent or empty fields are left out. Never raises."""
    found: dict[str, Any] = {}
    for name, aliases in LINEAGE_ALIASES.items():
        raw = next((rec[a] for a in aliases if a in rec and _present_value(rec[a])), None)
        if raw is None:
            continue
        value = _tags(raw) if name == "tags" else _lineage_text(raw)
        if value:
            found[name] = value
    return found


_CC_WORDS = (
    (r"creative\s*commons|creativecommons", " cc "),
    (r"attribution", " by "),
    (r"non-?\s*commercial", " nc "),
    (r"share-?\s*alike", " sa "),
    (r"no-?\s*deriv\w*", " nd "),
)
# yt-dlp's text for YouTube's Creative Commons option, which is CC BY 3.0 (YouTube Help, "Creative Commons")
_YOUTUBE_CC = "creative commons attribution license (reuse allowed)"


def license_id(text: str | None) -> str | None:
    """The SPDX identifier (https://spdx.org/licenses/) of a Creative Commons licence as people and sites write it
    ("CC BY-NC-SA 4.0", "cc-by-4.0", "Creative Commons Attribution 4.0 International", a creativecommons.org URL,
    "CC0", yt-dlp's YouTube text), so the card and exports group one licence under one name: ``CC-BY-4.0``,
    ``CC-BY-NC-SA-4.0``, ``CC0-1.0``. None for anything else, and for a CC licence without a version (the SPDX id
    needs one; the text stays in ``license``)."""
    if not text:
        return None
    t = str(text).strip().lower()
    if t == _YOUTUBE_CC:
        return "CC-BY-3.0"
    if re.search(r"\bcc-?0\b|\bcc\s*zero\b|publicdomain/zero", t):
        return "CC0-1.0"
    t = re.sub(r"\(.*?\)", " ", t)
    for pattern, word in _CC_WORDS:
        t = re.sub(pattern, word, t)
    tokens = re.findall(r"\d\.\d|[a-z]+", t)
    if "cc" not in tokens or "by" not in tokens:
        return None
    version = next((x for x in tokens if re.fullmatch(r"\d\.\d", x)), None)
    if version not in ("1.0", "2.0", "2.5", "3.0", "4.0"):
        return None
    parts = (
        ["CC", "BY"]
        + ["NC"] * ("nc" in tokens)
        + ["ND"] * ("nd" in tokens)
        + ["SA"] * ("sa" in tokens and "nd" not in tokens)
    )
    return "-".join(parts + [version])


def _present_value(v: Any) -> bool:
    if hasattr(v, "tolist"):  # numpy arrays from Parquet list columns
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return len(v) > 0
    return _present(v)


def _lineage_text(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        v = ", ".join(str(x) for x in v)
    text = str(v).strip()
    return text or None


def _tags(v: Any) -> list[str] | None:
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            try:
                v = json.loads(text)
            except ValueError:
                v = text.strip("[]")
        if isinstance(v, str):
            v = v.split(";") if ";" in v else v.split(",")
    if not isinstance(v, (list, tuple)):
        v = [v]
    tags = [str(t).strip() for t in v if t is not None and str(t).strip()]
    return tags or None


def _merge(rows: dict[str, dict], row: dict) -> None:
    key = os.path.realpath(row["path"]) if "://" not in row["path"] else row["path"]
    seen = rows.get(key)
    if seen is None:
        rows[key] = row
        return
    # First occurrence keeps its place and path; later ones add spans and fill a missing caption.
    if row["spans"]:
        seen["spans"] = (seen["spans"] or []) + row["spans"]
    if seen["original_caption"] is None:
        seen["original_caption"] = row["original_caption"]
    for k in LINEAGE_COLUMNS:
        if seen[k] is None:
            seen[k] = row[k]
        elif row[k] is not None and row[k] != seen[k]:  # the first listing wins; the run says which disagreed
            seen.setdefault("lineage_conflicts", []).append(k)
    if row["input_error"] and row["input_error"] != seen["input_error"]:
        # A bad list row about a file is not hidden by a good one: the row is an error until the list is fixed.
        seen["input_error"] = (
            f"{seen['input_error']}; {row['input_error']}" if seen["input_error"] else row["input_error"]
        )


def _expand_one(item: str, exts: tuple[str, ...], cfg: IngestConfig) -> Iterator[dict]:
    if storage.is_uri(item):
        yield from _expand_uri(item, exts, cfg)
        return
    item = storage.local(item)
    path = os.path.abspath(os.path.expanduser(item))
    if os.path.isdir(path):
        found = list(_walk(path, exts, cfg.follow_symlinks))
        if not found:
            yield _row(path, error=f"NoVideoFiles: directory has no file with a video extension ({', '.join(exts)})")
        yield from (_row(p) for p in found)
    elif os.path.lexists(path):
        if path.lower().endswith(LIST_EXTENSIONS):
            yield from _read_list(path, exts, cfg)
        else:
            yield _row(path)  # named explicitly: taken whatever its extension, the probe judges it
    elif _GLOB_CHARS.search(item):
        yield from _expand_glob(path, exts, cfg)
    else:
        yield _row(path, error=f"FileNotFoundError: no such file or directory: {path}")


def _unsupported(item: str, why: str) -> dict:
    return _row(item, error=f"UnsupportedURI: {why}")


def _expand_uri(item: str, exts: tuple[str, ...], cfg: IngestConfig) -> Iterator[dict]:
    """An object-storage prefix, glob, object or list file (``stages.storage``): the same rules as local paths
    (a prefix is walked, sorted, hidden names skipped; a glob takes video extensions unless it spells one)."""
    try:
        fs, path = storage.filesystem(item)
    except ValueError as e:
        yield _unsupported(item, f"{e} (gs:// needs pip install 'clipforge[gcs]', az:// 'clipforge[azure]')")
        return
    try:
        if _GLOB_CHARS.search(path):
            literal_ext = os.path.splitext(path)[1].lower()
            wanted = exts + ((literal_ext,) if literal_ext and not _GLOB_CHARS.search(literal_ext) else ())
            found = [p for p, d in sorted(fs.glob(path, detail=True).items()) if d.get("type") == "file"]
            found = [p for p in found if p.lower().endswith(wanted) and not _hidden(p)]
            if not found:
                yield _row(item, error=f"FileNotFoundError: glob matched no video file: {item}")
            yield from (_row(storage.full_uri(fs, p, item)) for p in found)
        elif fs.isdir(path):
            found = [p for p in sorted(fs.find(path)) if p.lower().endswith(exts) and not _hidden(p, path)]
            if not found:
                msg = f"NoVideoFiles: prefix has no object with a video extension ({', '.join(exts)})"
                yield _row(item, error=msg)
            yield from (_row(storage.full_uri(fs, p, item)) for p in found)
        elif fs.exists(path):
            if path.lower().endswith(LIST_EXTENSIONS):
                yield from _read_list(item, exts, cfg)
            else:
                yield _row(item)
        else:
            yield _row(item, error=f"FileNotFoundError: no such object or prefix: {item}")
    except Exception as e:  # noqa: BLE001 - a denied or malformed listing is this input's row; a dead store stops
        raise_if_environment(e, f"listing {item}")
        yield _row(item, error=f"{type(e).__name__}: cannot list {item}: {e}")


def _hidden(path: str, under: str = "") -> bool:
    """A name starting with "." anywhere below ``under`` (a hidden file or directory, as the local walk skips)."""
    rel = path[len(under) :] if under and path.startswith(under) else path.rsplit("/", 1)[-1]
    return any(part.startswith(".") for part in rel.split("/") if part)


def _walk(root: str, exts: tuple[str, ...], follow_symlinks: bool) -> Iterator[str]:
    """Video files under root, sorted, hidden entries skipped, symlink loops cut."""
    seen_dirs: set[str] = set()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink cycle (or two links to one dir): walk it once
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(exts):
                continue
            full = os.path.join(dirpath, name)
            if not follow_symlinks and os.path.islink(full):
                continue
            if os.path.isfile(full):  # skips dangling links
                found.append(full)
    yield from sorted(found)


def _expand_glob(pattern: str, exts: tuple[str, ...], cfg: IngestConfig) -> Iterator[dict]:
    matches = sorted(glob.glob(pattern, recursive=True))
    # A glob that spells out an extension ("*.bin") takes those files; otherwise only video extensions.
    literal_ext = os.path.splitext(pattern)[1].lower()
    wanted = exts + ((literal_ext,) if literal_ext and not _GLOB_CHARS.search(literal_ext) else ())
    taken = 0
    for m in matches:
        if os.path.isdir(m):
            for p in _walk(m, exts, cfg.follow_symlinks):
                taken += 1
                yield _row(p)
        elif m.lower().endswith(wanted) and os.path.isfile(m):
            taken += 1
            yield _row(os.path.abspath(m))
    if not taken:
        yield _row(pattern, error=f"FileNotFoundError: glob matched no video file: {pattern}")


# ---------------------------------------------------------------- list files


def _read_list(list_path: str, exts: tuple[str, ...], cfg: IngestConfig) -> Iterator[dict]:
    base = storage.dirname(list_path)
    try:
        records = list(_list_records(list_path))
    except Exception as e:  # a list we cannot parse is one error row, named by the list file
        raise_if_environment(e, f"list file {list_path}")
        yield _row(list_path, error=f"ValueError: cannot read list file {list_path}: {type(e).__name__}: {e}")
        return
    for lineno, rec in records:
        yield from _list_entry(rec, base, list_path, lineno, exts, cfg)


def _list_records(list_path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line/row number, {lower-cased column: value}) of each entry."""
    lower = list_path.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_read(list_path) as f:
            table = pq.read_table(f)
        for i, rec in enumerate(table.to_pylist(), 1):
            yield i, _lower_keys(rec)
        return
    text = storage.read_text(list_path) if storage.is_uri(list_path) else None
    if lower.endswith(".txt"):
        with _text(list_path, text) as f:
            for i, line in enumerate(f, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    yield i, {"path": line}
        return
    if lower.endswith(".jsonl"):
        with _text(list_path, text) as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    yield i, _lower_keys(json.loads(line))
        return
    delimiter = "\t" if lower.endswith(".tsv") else ","
    with _text(list_path, text) as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for i, rec in enumerate(reader, 2):  # line 1 is the header
            yield i, _lower_keys(rec)


def _text(path: str, text: str | None):
    """A text file object of a local list file, or of an object's text already read."""
    import io

    if text is not None:
        return io.StringIO(text, newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - used in a with block


def _lower_keys(rec: dict) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in rec.items() if k is not None}


def _list_entry(
    rec: dict[str, Any], base: str, list_path: str, lineno: int, exts: tuple[str, ...], cfg: IngestConfig
) -> Iterator[dict]:
    where = f"{os.path.basename(list_path)}:{lineno}"
    raw = next((rec[c] for c in PATH_COLUMNS if _present(rec.get(c))), None)
    if raw is None:
        if not any(c in rec for c in PATH_COLUMNS):
            cols = ", ".join(rec) or "none"
            msg = f"ValueError: {where}: no path column (expected one of {', '.join(PATH_COLUMNS)}; got {cols})"
        else:
            msg = f"ValueError: {where}: empty path"
        yield _row(list_path, error=msg)
        return
    raw = storage.local(str(raw).strip())
    path = storage.join(base, raw)
    try:
        caption, spans = _caption_and_spans(rec)
    except (ValueError, SyntaxError) as e:
        yield _row(path, error=f"ValueError: {where}: {e}")
        return
    lineage = lineage_of(rec)
    if storage.is_uri(path):
        # one request per listed object would make listing a large bucket slow: the probe says if it is missing
        try:
            storage.filesystem(path)
        except ValueError as e:
            yield _unsupported(path, f"{where}: {e}")
            return
        yield _row(path, caption=caption, spans=spans, lineage=lineage)
        return
    if os.path.isdir(path):  # a directory listed in a list expands like a named one; its rows share no spans
        found = list(_walk(path, exts, cfg.follow_symlinks))
        if not found:
            yield _row(path, error=f"NoVideoFiles: {where}: directory has no video file")
        for p in found:
            yield _row(p, caption=caption, lineage=lineage)
        return
    if not os.path.lexists(path):
        yield _row(path, error=f"FileNotFoundError: {where}: listed file does not exist: {path}", lineage=lineage)
        return
    yield _row(path, caption=caption, spans=spans, lineage=lineage)


def _present(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    return not (isinstance(v, str) and not v.strip())


def _caption_and_spans(rec: dict[str, Any]) -> tuple[str | None, list[dict] | None]:
    """(original_caption, spans) of one list row; raises ValueError on a malformed span."""
    caption_raw = next((rec[c] for c in CAPTION_COLUMNS if _present(rec.get(c))), None)
    if _present(rec.get("timestamp")):
        pairs = _parse_timestamps(rec["timestamp"])
        captions = _parse_caption_list(caption_raw, len(pairs))
        spans = [_span(a, b, c) for (a, b), c in zip(pairs, captions, strict=True)]
        return None, spans
    start = next((rec[c] for c in ("start_s", "start") if _present(rec.get(c))), None)
    end = next((rec[c] for c in ("end_s", "end") if _present(rec.get(c))), None)
    caption = str(caption_raw).strip() if caption_raw is not None else None
    if start is None and end is None:
        return caption, None
    if start is None or end is None:
        raise ValueError(f"a span needs both a start and an end (got start={start!r}, end={end!r})")
    return None, [_span(start, end, caption)]


def _span(start: Any, end: Any, caption: str | None) -> dict:
    s, e = parse_time(start), parse_time(end)
    if e <= s:
        raise ValueError(f"span end {e} s is not after its start {s} s")
    return {"start_s": s, "end_s": e, "caption": caption}


def _parse_timestamps(value: Any) -> list[tuple[Any, Any]]:
    """Panda-70M's timestamp cell: a list of [start, end] pairs (as a Python/JSON literal or a real list)."""
    data = ast.literal_eval(value) if isinstance(value, str) else value
    if isinstance(data, (list, tuple)) and len(data) == 2 and not isinstance(data[0], (list, tuple)):
        data = [data]  # a single pair
    if not isinstance(data, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in data):
        raise ValueError(f"timestamp is not a list of [start, end] pairs: {value!r}")
    return [(p[0], p[1]) for p in data]


def _parse_caption_list(value: Any, n: int) -> list[str | None]:
    if value is None:
        return [None] * n
    items: Any = value
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            items = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            items = value  # a caption that merely starts with "["
    if isinstance(items, (list, tuple)):
        if len(items) != n:
            raise ValueError(f"{len(items)} captions for {n} timestamp spans")
        return [str(c) if c is not None else None for c in items]
    return [str(items)] * n  # one caption for every span


def parse_time(value: Any) -> float:
    """Seconds from a number or a "[[HH:]MM:]SS[.mmm]" string (Panda-70M writes "0:00:05.005")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"bad time {value!r}")
        return float(value)
    text = str(value).strip()
    parts = text.split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"bad time {value!r}")
    try:
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise ValueError(f"bad time {value!r} (want seconds or [HH:]MM:SS.mmm)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad time {value!r}")
    return seconds


# ---------------------------------------------------------------- sidecars


def sidecar_caption(video_path: str, listing: set[str] | None = None) -> str | None:
    """Caption from a sidecar next to the video (see :func:`read_sidecars`)."""
    return read_sidecars(video_path, listing)[0]


def read_sidecars(video_path: str, listing: set[str] | None = None) -> tuple[str | None, dict[str, Any]]:
    """(caption, lineage) from sidecars next to the video. Caption: <video>.txt, then <stem>.txt, then the first
    JSON sidecar (<stem>.json, then yt-dlp's <stem>.info.json) with a caption/text/description/title string.
    Lineage (:func:`lineage_of`): from those JSON sidecars, the first one's value of each field winning. A sidecar
    that is absent, unreadable or not a JSON object gives nothing.

    ``listing``: for an object-storage video, the object URIs of its prefix (one listing per prefix, not one
    request per candidate); a candidate not in it is not read."""
    stem = os.path.splitext(video_path)[0]

    def read(candidate: str) -> str | None:
        return _read_text(candidate) if listing is None or candidate in listing else None

    caption = None
    for candidate in (video_path + ".txt", stem + ".txt"):
        caption = read(candidate)
        if caption:
            break
    lineage: dict[str, Any] = {}
    for candidate in (stem + ".json", stem + ".info.json"):
        raw = read(candidate)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        data = _lower_keys(data)
        if not caption:
            caption = next(
                (data[k].strip() for k in SIDECAR_JSON_KEYS if isinstance(data.get(k), str) and data[k].strip()), None
            )
        for k, v in lineage_of(data).items():
            lineage.setdefault(k, v)
    return caption or None, lineage


def _read_text(path: str) -> str | None:
    try:
        if storage.is_uri(path):
            return storage.read_text(path).strip() or None
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            return f.read().strip() or None
    except OSError:  # absent (the common case) or unreadable: no sidecar
        return None
