"""``clipforge report OUT``: one self-contained HTML page that shows what a run made of the corpus.

The page opens offline from a file (no server, no external URL): plots are matplotlib PNGs and the gallery's poster
frames are small JPEGs, all embedded as data URIs. Everything is read from the dataset itself — the DuckDB views
(``pipeline.store.open``), ``config.json`` (thresholds) and ``runs/*.json`` (wall time) — so a report can be made
again at any time, on any copy of OUT.

Sections: the funnel (input files -> readable videos -> shots -> clips -> kept, counts and hours), drop reasons,
a histogram of every score column with the configured ``filters.min_<score>`` / ``filters.max_<score>`` drawn on
it, clip duration / resolution / aspect ratio / fps, caption lengths and QA flags (when captions exist), the last
run's wall time per phase and throughput, the failed input files with their errors, and a gallery of kept and
rejected clips per drop reason (one decoded middle frame each).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stages import storage

_FLOAT_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL")
# String caption columns that are bookkeeping, not text to measure.
_CAPTION_META_SUFFIXES = ("_status", "_model", "_error", "_prompt", "_reason", "_id", "_path")

GALLERY_PER_GROUP = 6
FAILED_FILES_MAX = 500


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# ------------------------------------------------------------------------------------------------ poster frames


def poster_jpeg(video_path: str | Path, t_s: float | None = None, *, max_side: int = 320, quality: int = 80) -> bytes:
    """One frame of a video as JPEG bytes: the first frame at or after ``t_s`` (default: the middle).

    ``t_s`` counts from the first frame. Decodes the stream ``stages.media`` picks (never cover art) with PyAV from
    the nearest keyframe before ``t_s``, in its true colours and display aspect; the frame is shrunk to
    ``max_side`` px on its longer side. Raises if the file has no decodable video frame.
    """
    from PIL import Image

    from stages.media import display_size, open_video, sample_aspect_ratio, to_rgb

    container, stream = open_video(video_path)
    with container:
        tb = stream.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
        if t_s is None:
            duration = None
            if stream.duration is not None and tb is not None:
                duration = float(stream.duration * tb)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            t_s = duration / 2 if duration else 0.0
        if t_s > 0 and tb is not None:
            # seek lands on the keyframe before t_s; decode forward to the wanted time
            container.seek(int((start + t_s) / tb), stream=stream, backward=True, any_frame=False)
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.time is None or frame.time >= start + t_s - 1e-3:
                break
        if chosen is None:
            raise ValueError(f"no decodable video frame in {video_path}")
        cc = stream.codec_context
        w, h = display_size(cc.width, cc.height, sample_aspect_ratio(stream))  # square pixels, true colour
        image = Image.fromarray(to_rgb(chosen, w, h, coded_height=cc.height))
    image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def clip_poster_source(out: Path, row: dict[str, Any]) -> tuple[Path, float | None]:
    """Where a clip's poster frame comes from: its own file when it was cut, else the source video mid-span."""
    if row.get("clip_path"):
        return storage.under(out, row["clip_path"]), None
    start, end = row.get("start_s") or 0.0, row.get("end_s")
    mid = (start + end) / 2 if end is not None else start
    return Path(row["video_path"]), mid


# --------------------------------------------------------------------------------------------- data collection


def _load_json(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(storage.read_text(path))
    except (OSError, ValueError):
        return {}


def runs(out: str | Path) -> list[dict[str, Any]]:
    """Every run record under OUT/runs, oldest first (run ids are timestamps)."""
    records = []
    for p in storage.glob(storage.under(out, "runs"), "*.json"):
        rec = _load_json(p)
        if rec:
            rec.setdefault("run_id", Path(str(p)).stem)
            records.append(rec)
    return records


def column_types(con, view: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {view}").fetchall()}


def score_columns(types: dict[str, str]) -> list[str]:
    """Float columns a stage added to the clips view (timings ``*_s`` excluded): the ones worth a histogram."""
    from pipeline.schema import CLIPS  # lazy: `clipforge --help` should not pay for pyarrow

    base = set(CLIPS.names)  # the clip table's own columns; every other numeric one comes from a stage
    return [c for c, t in types.items() if c not in base and t.split("(")[0] in _FLOAT_TYPES and not c.endswith("_s")]


def caption_text_columns(types: dict[str, str]) -> list[str]:
    cols = [
        c
        for c, t in types.items()
        if t == "VARCHAR" and c.startswith("caption") and not c.endswith(_CAPTION_META_SUFFIXES)
    ]
    return cols


def thresholds(config: dict[str, Any], column: str) -> dict[str, tuple[str, float]]:
    """The configured bounds of a column: ``{"min"|"max": (setting name, value)}``, from the filter rules of the
    stage catalogue (``stages.catalogue.rules``; the user's stages from config.json's ``stages`` list) and the
    thresholds saved in config.json. A rule disabled (threshold None) draws nothing."""
    found = {}
    flip = {"<": ">", ">": "<"}
    for rule in _rules(tuple(config.get("stages") or ())):
        # an exemption's line is a bound the other way: a dark clip's highlights above it keep it, so it is their min
        exempt = tuple((col, flip[op], setting) for col, op, setting in rule.unless or ())
        for col, op, setting in rule.conditions + exempt:
            if col != column or setting is None:
                continue
            section, _, key = setting.partition(".")
            value = (config.get(section) or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found.setdefault("min" if op == "<" else "max", (key, float(value)))
    return found


def _rules(extra: tuple[str, ...]):
    """The catalogue's rules; built-in ones only when a user stage's module cannot be imported here."""
    from stages.catalogue import rules

    try:
        return rules(extra)
    except (ImportError, AttributeError, TypeError, ValueError):
        return rules()


def duration_bounds(config: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Bounds on clip duration: ``filters.min/max_duration_s`` if set, else cut settings ``clips.min/max_s``."""
    found = thresholds(config, "duration_s")
    clips = config.get("clips") or {}
    for bound in ("min", "max"):
        v = clips.get(f"{bound}_s")
        if bound not in found and isinstance(v, (int, float)) and not isinstance(v, bool):
            found[bound] = (f"clips.{bound}_s", float(v))
    return found


def funnel(con) -> list[dict[str, Any]]:
    """The funnel steps with counts and hours (hours None where the step has no duration)."""
    files, files_h = con.execute("SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM videos").fetchone()
    ok, ok_h = con.execute(
        "SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM videos WHERE status = 'ok'"
    ).fetchone()
    types = column_types(con, "shots")
    if "scenes" in types:
        # unnest rather than a list lambda: the lambda syntax changed between DuckDB 1.x releases
        shots = con.execute("SELECT coalesce(sum(n_shots), 0) FROM shots").fetchone()[0]
        shots_h = con.execute(
            "SELECT coalesce(sum((s.end_frame - s.start_frame) / fps), 0) / 3600 "
            "FROM (SELECT unnest(scenes) AS s, nullif(fps, 0) AS fps FROM shots)"
        ).fetchone()[0]
    else:
        shots, shots_h = con.execute("SELECT coalesce(sum(n_shots), 0), NULL FROM shots").fetchone()
    clips, clips_h = con.execute("SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM clips").fetchone()
    kept, kept_h = con.execute("SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM kept").fetchone()
    return [
        {"step": "input files", "count": files, "hours": files_h},
        {"step": "readable videos", "count": ok, "hours": ok_h},
        {"step": "shots", "count": int(shots or 0), "hours": shots_h},
        {"step": "clips", "count": clips, "hours": clips_h},
        {"step": "kept", "count": kept, "hours": kept_h},
    ]


def _values(con, sql: str) -> list[Any]:
    return [r[0] for r in con.execute(sql).fetchall()]


def _split(con, expr: str, cond: str) -> dict[str, list[Any]]:
    """Values of ``expr`` over clips, split into kept and rejected."""
    rows = con.execute(f"SELECT {expr}, drop_reason IS NULL FROM clips WHERE {cond}").fetchall()
    return {"kept": [r[0] for r in rows if r[1]], "rejected": [r[0] for r in rows if not r[1]]}


def collect(out: str | Path) -> dict[str, Any]:
    """Everything the report shows, as plain Python data (no plots)."""
    from pipeline import store

    out = storage.location(out)
    con = store.open(out)
    try:
        types = column_types(con, "clips")
        d: dict[str, Any] = {"out": str(out), "types": types}
        d["config"] = _load_json(storage.under(out, "config.json"))
        d["runs"] = runs(out)
        d["funnel"] = funnel(con)
        d["status"] = con.execute("SELECT status, count(*) FROM videos GROUP BY ALL ORDER BY 2 DESC").fetchall()
        d["drop_reasons"] = con.execute(
            "SELECT drop_reason, count(*), coalesce(sum(duration_s), 0) / 3600 FROM clips "
            "WHERE drop_reason IS NOT NULL GROUP BY ALL ORDER BY 2 DESC, 1"
        ).fetchall()
        d["failed"] = con.execute(
            f"SELECT path, error_type, error FROM videos WHERE status = 'error' ORDER BY path LIMIT {FAILED_FILES_MAX}"
        ).fetchall()
        d["n_failed"] = con.execute("SELECT count(*) FROM videos WHERE status = 'error'").fetchone()[0]
        d["scores"] = {}
        for c in score_columns(types):
            rows = con.execute(
                f'SELECT "{c}", drop_reason IS NULL FROM clips WHERE "{c}" IS NOT NULL AND isfinite("{c}")'
            ).fetchall()
            missing = con.execute(f'SELECT count(*) FROM clips WHERE "{c}" IS NULL').fetchone()[0]
            d["scores"][c] = {
                "series": {"kept": [r[0] for r in rows if r[1]], "rejected": [r[0] for r in rows if not r[1]]},
                "missing": missing,
                "thresholds": thresholds(d["config"], c),
            }
        d["durations"] = _split(con, "duration_s", "duration_s IS NOT NULL")
        d["duration_bounds"] = duration_bounds(d["config"])
        d["resolutions"] = con.execute(
            "SELECT width || 'x' || height, count(*) FROM clips WHERE width IS NOT NULL GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall()
        d["aspects"] = _split(con, "width / height", "width IS NOT NULL AND height > 0")
        d["fps"] = con.execute(
            "SELECT round(fps, 2), count(*) FROM clips WHERE fps IS NOT NULL GROUP BY ALL ORDER BY 1"
        ).fetchall()
        d["captions"] = {
            c: _values(con, f"SELECT len(string_split(trim(\"{c}\"), ' ')) FROM clips WHERE trim(\"{c}\") <> ''")
            for c in ["original_caption", *caption_text_columns(types)]
        }
        d["has_captions"] = bool(caption_text_columns(types))
        flag_cols = [c for c, t in types.items() if "flag" in c and t.endswith("[]")]
        d["flags"] = {
            c: con.execute(
                f'SELECT f, count(*) FROM (SELECT unnest("{c}") AS f FROM clips) GROUP BY ALL ORDER BY 2 DESC, 1'
            ).fetchall()
            for c in flag_cols
        }
        d["caption_status"] = (
            con.execute(
                "SELECT coalesce(caption_status, '(none)'), count(*) FROM clips GROUP BY ALL ORDER BY 2 DESC"
            ).fetchall()
            if "caption_status" in types
            else []
        )
        d["stage_seconds"] = {}
        stypes = column_types(con, "shots")
        for c in ("detect_s", "cut_s"):
            if c in stypes:
                d["stage_seconds"][c] = con.execute(f"SELECT coalesce(sum({c}), 0) FROM shots").fetchone()[0]
        # the gallery: kept first, then each drop reason; a stable pseudo-random pick per group
        groups = [("kept", "drop_reason IS NULL")] + [(r[0], "drop_reason = ?") for r in d["drop_reasons"]]
        d["gallery"] = []
        for name, cond in groups:
            params = [] if name == "kept" else [name]
            cur = con.execute(
                "SELECT c.clip_id, c.clip_path, c.start_s, c.end_s, c.duration_s, c.original_caption, "
                f"v.path AS video_path FROM clips c LEFT JOIN videos v USING (video_id) WHERE {cond} "
                f"ORDER BY hash(c.clip_id) LIMIT {GALLERY_PER_GROUP}",
                params,
            )
            names = [x[0] for x in cur.description]
            d["gallery"].append((name, [dict(zip(names, r, strict=True)) for r in cur.fetchall()]))
        return d
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------------ plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; also safe inside Ray workers and CI
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(uri: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="{uri}">'


def plot_funnel(steps: list[dict[str, Any]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    labels = [s["step"] for s in steps][::-1]
    counts = [s["count"] for s in steps][::-1]
    ax.barh(labels, counts, color=["#2a9d8f", "#4a8fc1", "#6c8ebf", "#8aa1c9", "#a9b6cc"][::-1][: len(counts)])
    for i, (n, s) in enumerate(zip(counts, steps[::-1], strict=True)):
        hours = f"  {s['hours']:.3f} h" if s["hours"] is not None else ""
        ax.text(n, i, f" {n:,}{hours}", va="center", fontsize=8)
    ax.set_xscale("symlog")
    ax.set_xlim(0, max(counts + [1]) * 20)
    ax.set_xlabel("count (log scale)")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def plot_bars(items: Sequence[tuple[Any, int]], title: str, xlabel: str = "clips", color: str = "#c0504d") -> str:
    plt = _plt()
    items = list(items)[:25]
    fig, ax = plt.subplots(figsize=(4.6, 0.3 * max(len(items), 2) + 0.9))
    labels = [str(k) for k, _ in items][::-1]
    ax.barh(labels, [n for _, n in items][::-1], color=color)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


_SERIES_COLORS = {"kept": "#2a9d8f", "rejected": "#c0504d"}


def plot_histogram(
    name: str,
    series: dict[str, list[float]],
    bounds: dict[str, tuple[str, float]] | None = None,
    missing: int = 0,
    xlabel: str | None = None,
) -> str:
    """A stacked histogram of named series (kept / rejected) with the configured bounds as dashed lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 2.6))
    series = {k: v for k, v in series.items() if v} or {"clips": []}
    values = [x for v in series.values() for x in v]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    for _, v in (bounds or {}).values():  # a threshold must be visible even outside the data's range
        lo, hi = min(lo, v), max(hi, v)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    ax.hist(
        list(series.values()),
        bins=30,
        range=(lo, hi),
        stacked=True,
        color=[_SERIES_COLORS.get(k, "#4a8fc1") for k in series],
        label=list(series),
    )
    for setting, v in (bounds or {}).values():
        ax.axvline(v, color="black", linestyle="--", linewidth=1.2)
        ax.annotate(
            f"{setting} = {v:g}",
            xy=(v, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=7,
        )
    title = f"{name}  (n={len(values):,}" + (f", {missing:,} missing)" if missing else ")")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel or name, fontsize=8)
    ax.tick_params(labelsize=7)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


# ------------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plot{max-width:100%}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.card{width:180px;font-size:12px}
.card img{width:180px;height:110px;object-fit:contain;background:#111;display:block}
.card .cap{color:#444;max-height:4.2em;overflow:hidden}.err{color:#a00;font-family:monospace;font-size:12px}
.muted{color:#888}
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = (), cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            if isinstance(v, float):
                v = f"{v:,.3f}"
            elif isinstance(v, int):
                v = f"{v:,}"
            cells.append(f'<td class="n">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><tr>{head}</tr>{"".join(body)}</table>'


def _section_funnel(d: dict[str, Any]) -> str:
    steps = d["funnel"]
    rows = []
    prev = None
    for s in steps:
        share = f"{100 * s['count'] / prev:.0f}%" if prev else ""
        rows.append((s["step"], s["count"], s["hours"] if s["hours"] is not None else "", share))
        prev = s["count"] if s["step"] not in ("readable videos",) else None  # videos -> shots is not a ratio
    status = ", ".join(f"{esc(k)} {n:,}" for k, n in d["status"])
    return (
        '<h2 id="funnel">Funnel</h2>'
        f'<p class="sub">input file status: {status or "none"}</p>'
        + _table(["step", "count", "hours", "of previous"], rows, numeric=(1, 2, 3), cls="funnel")
        + _img(plot_funnel(steps), "funnel")
    )


def _section_drops(d: dict[str, Any]) -> str:
    if not d["drop_reasons"]:
        return '<h2 id="drops">Drop reasons</h2><p>No clip was dropped.</p>'
    return (
        '<h2 id="drops">Drop reasons</h2>'
        + _table(["drop_reason", "clips", "hours"], d["drop_reasons"], numeric=(1, 2))
        + _img(plot_bars([(r[0], r[1]) for r in d["drop_reasons"]], "clips per drop reason"), "drop reasons")
    )


def _section_scores(d: dict[str, Any]) -> str:
    if not d["scores"]:
        return '<h2 id="scores">Scores</h2><p class="muted">No score columns in this dataset yet.</p>'
    imgs = [
        _img(
            plot_histogram(c, s["series"], s["thresholds"], s["missing"]),
            f"histogram of {c}",
            "plot hist",
        )
        for c, s in d["scores"].items()
    ]
    notes = [
        f"{esc(c)}: " + ", ".join(f"{esc(k)} = {v:g}" for k, v in s["thresholds"].values())
        for c, s in d["scores"].items()
        if s["thresholds"]
    ]
    legend = "Dashed lines: thresholds from config.json <code>filters</code>" + (
        f" ({'; '.join(notes)})." if notes else " (none configured for these columns)."
    )
    return f'<h2 id="scores">Scores</h2><p class="sub">{legend}</p><div class="plots">{"".join(imgs)}</div>'


def _section_distributions(d: dict[str, Any]) -> str:
    imgs = []
    if any(d["durations"].values()):
        plot = plot_histogram("duration_s", d["durations"], d["duration_bounds"], xlabel="clip duration (s)")
        imgs.append(_img(plot, "clip durations"))
    if any(d["aspects"].values()):
        imgs.append(_img(plot_histogram("aspect ratio", d["aspects"], xlabel="width / height"), "aspect ratios"))
    if d["resolutions"]:
        imgs.append(_img(plot_bars(d["resolutions"], "clip resolution", color="#4a8fc1"), "resolutions"))
    if d["fps"]:
        imgs.append(_img(plot_bars(d["fps"], "clip fps", color="#4a8fc1"), "fps"))
    body = f'<div class="plots">{"".join(imgs)}</div>' if imgs else '<p class="muted">No clips.</p>'
    bounds = ", ".join(f"{esc(k)} = {v:g}" for k, v in d["duration_bounds"].values())
    legend = f'<p class="sub">Dashed lines on durations: {bounds}.</p>' if bounds and imgs else ""
    return '<h2 id="distributions">Duration, resolution, aspect ratio, fps (all clips)</h2>' + legend + body


def _section_captions(d: dict[str, Any]) -> str:
    imgs = [
        _img(plot_histogram(c, {"clips": lengths}, xlabel=f"{c} length (words)"), f"{c} length")
        for c, lengths in d["captions"].items()
        if lengths
    ]
    parts = ['<h2 id="captions">Captions</h2>']
    if not d["has_captions"]:
        parts.append('<p class="muted">No generated captions in this dataset (captions stage not run).</p>')
    if imgs:
        parts.append(f'<div class="plots">{"".join(imgs)}</div>')
    if d["caption_status"]:
        parts.append(_table(["caption_status", "clips"], d["caption_status"], numeric=(1,)))
    for c, counts in d["flags"].items():
        if counts:
            parts.append(_table([f"{c} (QA flag)", "clips"], counts, numeric=(1,)))
            parts.append(_img(plot_bars(counts, f"{c} counts", color="#e9a03b"), f"{c} counts"))
        else:
            parts.append(f'<p class="muted">{esc(c)}: no flag raised.</p>')
    return "".join(parts)


def _section_runs(d: dict[str, Any]) -> str:
    parts = ['<h2 id="runs">Wall time and throughput</h2>']
    if not d["runs"]:
        return parts[0] + '<p class="muted">No run record under runs/.</p>'
    last = d["runs"][-1]
    phases = {k: float(v) for k, v in (last.get("phases") or {}).items()}
    total = sum(phases.values())
    files, clips = last.get("files", 0) or 0, last.get("clips", 0) or 0
    video_h = last.get("video_hours", 0.0) or 0.0
    rows = []
    for name, sec in phases.items():
        unit, n = ("files", files) if name in ("probe", "plan") else ("clips", clips)
        rate = f"{n / sec:,.2f} {unit}/s" if sec > 0 and n else ""
        rows.append((name, sec, f"{100 * sec / total:.0f}%" if total else "", rate))
    rows.append(("total", total, "100%", f"{video_h * 3600 / total:,.2f} s of video per s" if total else ""))
    parts.append(f'<p class="sub">last run <code>{esc(last.get("run_id"))}</code></p>')
    parts.append(_table(["phase", "wall s", "share", "throughput"], rows, numeric=(1, 2)))
    if d["stage_seconds"]:
        parts.append(
            '<p class="sub">summed per-video worker time (all runs): '
            + ", ".join(f"{esc(k)} {v:,.1f} s" for k, v in d["stage_seconds"].items())
            + "</p>"
        )
    if len(d["runs"]) > 1:
        hist = [
            (
                r.get("run_id"),
                r.get("files", ""),
                r.get("clips", ""),
                r.get("kept", ""),
                sum(float(v) for v in (r.get("phases") or {}).values()),
            )
            for r in d["runs"]
        ]
        parts.append(_table(["run", "files", "clips", "kept", "wall s"], hist, numeric=(1, 2, 3, 4)))
    return "".join(parts)


def _section_failed(d: dict[str, Any]) -> str:
    head = f'<h2 id="failed">Failed input files ({d["n_failed"]:,})</h2>'
    if not d["failed"]:
        return head + "<p>Every input file was readable.</p>"
    more = (
        f'<p class="muted">first {len(d["failed"])} shown; query the rest with '
        "<code>SELECT * FROM videos WHERE status = 'error'</code></p>"
        if d["n_failed"] > len(d["failed"])
        else ""
    )
    return head + _table(["path", "error_type", "error"], d["failed"], cls="failed") + more


def _poster_uri(out: Path, row: dict[str, Any]) -> tuple[str | None, str | None]:
    try:
        src, t = clip_poster_source(out, row)
        data = poster_jpeg(src, t, max_side=240, quality=70)
    except Exception as e:  # a broken clip gets a card saying why, never a blank report
        return None, f"{type(e).__name__}: {e}"
    return "data:image/jpeg;base64," + base64.b64encode(data).decode(), None


def _section_gallery(out: Path, d: dict[str, Any]) -> str:
    parts = ['<h2 id="gallery">Gallery: kept and rejected clips</h2>']
    for name, rows in d["gallery"]:
        if not rows:
            continue
        cards = []
        for r in rows:
            uri, err = _poster_uri(out, r)
            pic = _img(uri, f"poster {r['clip_id']}", "poster") if uri else f'<div class="err">{esc(err)}</div>'
            span = f"{r['start_s'] or 0:.2f}-{r['end_s'] or 0:.2f}s" if r["end_s"] is not None else ""
            cards.append(
                f'<div class="card">{pic}<div><code>{esc(r["clip_id"])}</code> {esc(span)}</div>'
                f'<div class="cap">{esc(r["original_caption"])}</div></div>'
            )
        label = "kept" if name == "kept" else f"rejected: {name}"
        parts.append(f'<h3>{esc(label)}</h3><div class="gallery">{"".join(cards)}</div>')
    if len(parts) == 1:
        parts.append('<p class="muted">No clips.</p>')
    return "".join(parts)


def render(out: str | Path, d: dict[str, Any] | None = None) -> str:
    """The report page as one HTML string."""
    out = storage.location(out)
    d = d if d is not None else collect(out)
    sections = [
        _section_funnel(d),
        _section_drops(d),
        _section_scores(d),
        _section_distributions(d),
        _section_captions(d),
        _section_runs(d),
        _section_failed(d),
        _section_gallery(out, d),
    ]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    nav = " · ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in [
            ("funnel", "funnel"),
            ("drops", "drops"),
            ("scores", "scores"),
            ("distributions", "distributions"),
            ("captions", "captions"),
            ("runs", "wall time"),
            ("failed", "failed files"),
            ("gallery", "gallery"),
        ]
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>clipforge report: {esc(Path(str(out)).name)}</title><style>{_CSS}</style></head><body>"
        f'<h1>clipforge report</h1><p class="sub"><code>{esc(out)}</code> · generated {stamp}</p>'
        f"<p>{nav}</p>{''.join(sections)}</body></html>"
    )


def write_report(out: str | Path, html_path: str | Path | None = None) -> Path:
    """Write the self-contained report of dataset ``out`` (default ``OUT/report.html``) and return its path."""
    out = storage.location(out)
    path = storage.as_path(html_path) if html_path else storage.under(out, "report.html")
    # atomic: a temporary name and a rename (local), one PUT (bucket): a browser reloading never sees half a page
    storage.write_text(path, render(out))
    return path


def summary_text(out: str | Path) -> str:
    """The funnel, drop reasons and last run's wall time as a few lines of text (for the terminal)."""
    from pipeline import store

    out = storage.location(out)
    con = store.open(out)
    try:
        steps = funnel(con)
        reasons = con.execute(
            "SELECT drop_reason, count(*) FROM clips WHERE drop_reason IS NOT NULL GROUP BY ALL ORDER BY 2 DESC, 1"
        ).fetchall()
        n_failed = con.execute("SELECT count(*) FROM videos WHERE status = 'error'").fetchone()[0]
        scores = score_columns(column_types(con, "clips"))
    finally:
        con.close()
    lines = [f"clipforge dataset {out}"]
    for s in steps:
        hours = f"{s['hours']:10.3f} h" if s["hours"] is not None else ""
        lines.append(f"  {s['step']:<16} {s['count']:>10,} {hours}")
    lines.append(f"  failed files     {n_failed:>10,}")
    for reason, n in reasons:
        lines.append(f"    dropped {reason:<30} {n:>8,}")
    if scores:
        lines.append("  score columns    " + ", ".join(scores))
    history = runs(out)
    if history and history[-1].get("phases"):
        phases = history[-1]["phases"]
        lines.append("  last run         " + ", ".join(f"{k} {float(v):.1f}s" for k, v in phases.items()))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="dataset directory OUT")
    parser.add_argument("--html", help="where to write the page (default: OUT/report.html)")


def main(args: argparse.Namespace) -> int:
    path = write_report(args.out, args.html)
    print(summary_text(args.out))
    print(f"report: {path}")
    return 0


def run_counts(out: str | Path) -> dict[str, Any]:
    """The run summary's counts from the stored tables: files by status, video hours, shots, clips, kept, and
    clips per drop reason."""
    from pipeline import store

    con = store.open(out)
    try:
        c: dict[str, Any] = {}
        row = con.execute(
            "SELECT count(*), count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'error'), "
            "count(*) FILTER (status = 'duplicate'), coalesce(sum(duration_s) FILTER (status = 'ok'), 0) / 3600 "
            "FROM videos"
        ).fetchone()
        c["files"], c["videos_ok"], c["videos_error"], c["videos_duplicate"], c["video_hours"] = row
        c["shots"] = con.execute("SELECT coalesce(sum(n_shots), 0) FROM shots").fetchone()[0]
        c["clips"], c["clip_hours"] = con.execute(
            "SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM clips"
        ).fetchone()
        c["kept"], c["kept_hours"] = con.execute(
            "SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM kept"
        ).fetchone()
        c["drop_reasons"] = con.execute(
            "SELECT drop_reason, count(*) FROM clips WHERE drop_reason IS NOT NULL GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall()
        return c
    finally:
        con.close()


KEPT = "(kept)"


def version_diff(out: str | Path, a: int | None, b: int | None) -> list[dict[str, Any]]:
    """The funnel difference between OUT versions ``a`` and ``b`` (None: the tables as they are now): one row per
    drop reason (``(kept)`` for clips with none) with ``at_a``, ``at_b`` (clips with that reason in each version),
    ``gained`` (clips that have it in ``b`` and did not in ``a``, new clips included) and ``lost`` (clips that had
    it in ``a`` and do not in ``b``, vanished clips included). Rows sorted by reason, ``(kept)`` first.
    Raises ``store.VersionNotFound`` for a version OUT never recorded."""
    import duckdb

    from pipeline import store

    sql = f"SELECT clip_id, coalesce(drop_reason, '{KEPT}') AS reason FROM clips"
    con = duckdb.connect(":memory:")
    try:
        con.register("a", store.query(out, sql, version=a))
        con.register("b", store.query(out, sql, version=b))
        rows = con.execute(
            """
            WITH j AS (SELECT a.reason AS ra, b.reason AS rb FROM a FULL OUTER JOIN b USING (clip_id)),
            r AS (SELECT ra AS reason FROM j WHERE ra IS NOT NULL UNION SELECT rb FROM j WHERE rb IS NOT NULL)
            SELECT r.reason,
                   count(*) FILTER (ra = r.reason) AS at_a,
                   count(*) FILTER (rb = r.reason) AS at_b,
                   count(*) FILTER (rb = r.reason AND ra IS DISTINCT FROM r.reason) AS gained,
                   count(*) FILTER (ra = r.reason AND rb IS DISTINCT FROM r.reason) AS lost
            FROM r, j GROUP BY r.reason ORDER BY r.reason <> '(kept)', r.reason
            """
        ).fetchall()
    finally:
        con.close()
    return [dict(zip(("reason", "at_a", "at_b", "gained", "lost"), row, strict=True)) for row in rows]
