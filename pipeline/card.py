"""``clipforge card OUT``: a datasheet of the dataset, regenerated from its tables so it is always true.

Writes ``card.json`` (every figure) and ``card.md`` (the same, for people) into OUT (or ``--dest``): what went in
(input files by status, hours, licences when the inputs carry a ``license`` column), the funnel (clips and hours kept
and per drop reason), score distributions (5/25/50/75/95th percentiles over all clips and over kept ones), caption
models and prompt versions, the models and settings of the run (config.json), dedup (copies dropped, groups), OUT's
versions, and the code's versions. The sections follow "Datasheets for Datasets" (Gebru et al., CACM 64(12), 2021):
composition, collection, preprocessing, distribution.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline.provenance import package_versions
from stages import storage

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# how a consent field reads (lower-cased, trimmed): given, refused; any other value is counted as "other"
CONSENT_YES = ("true", "yes", "y", "1", "given", "granted", "opt-in", "opt in", "signed")
CONSENT_NO = ("false", "no", "n", "0", "refused", "denied", "withdrawn", "opt-out", "opt out")


def collect(out: str | Path) -> dict[str, Any]:
    """Every figure of the card, from the tables (DuckDB over the current version)."""
    from pipeline import store
    from pipeline.report import _load_json, column_types, run_counts, score_columns

    out = storage.location(out)
    counts = run_counts(out)
    con = store.open(out)
    try:
        card: dict[str, Any] = {"dataset": str(out), "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        recorded = store.versions(out)
        card["version"] = recorded[-1]["version"] if recorded else None
        card["versions"] = [{k: v[k] for k in ("version", "command", "at")} for v in recorded]
        card["schema_version"] = recorded[-1]["schema_version"] if recorded else None
        card["inputs"] = {
            "files": counts["files"],
            "by_status": dict(con.execute("SELECT status, count(*) FROM videos GROUP BY ALL ORDER BY 1").fetchall()),
            "video_hours": round(counts["video_hours"], 4),
        }
        vcols = column_types(con, "videos")
        if "license" in vcols and con.execute("SELECT count(license) FROM videos").fetchone()[0]:
            # per licence: the ok videos that carry it and what of them is kept (the clips view shows each clip
            # its video's licence)
            yes, no = (", ".join(f"'{v}'" for v in values) for values in (CONSENT_YES, CONSENT_NO))
            consent = "lower(trim(v.consent))"
            rows = con.execute(
                f"SELECT coalesce({'v.license_id, ' if 'license_id' in vcols else ''}v.license, 'not given') AS lic, "
                "count(*) AS videos, "
                f"count(*) FILTER ({consent} IN ({yes})), count(*) FILTER ({consent} IN ({no})), "
                f"count(v.consent) FILTER ({consent} NOT IN ({yes}, {no})), "
                "coalesce(sum(k.n), 0), coalesce(sum(k.h), 0) FROM videos v LEFT JOIN (SELECT video_id, count(*) n, "
                "sum(duration_s) / 3600 h FROM kept GROUP BY ALL) k USING (video_id) WHERE v.status = 'ok' "
                "GROUP BY ALL ORDER BY 2 DESC, 1"
            ).fetchall()
            card["inputs"]["licenses"] = {
                lic: {
                    "videos": n,
                    "consent": {"yes": y, "no": c_no, "other": other, "not_given": n - y - c_no - other},
                    "kept_clips": int(k),
                    "kept_hours": round(h, 4),
                }
                for lic, n, y, c_no, other, k, h in rows
            }
        else:
            card["inputs"]["licenses"] = "not recorded: the inputs carried no license (list column or sidecar)"
        hours = dict(
            con.execute(
                "SELECT coalesce(drop_reason, '(kept)'), sum(duration_s) / 3600 FROM clips GROUP BY ALL"
            ).fetchall()
        )
        card["funnel"] = {
            "shots": counts["shots"],
            "clips": counts["clips"],
            "clip_hours": round(counts["clip_hours"], 4),
            "kept": counts["kept"],
            "kept_hours": round(counts["kept_hours"], 4),
            "dropped": {r: {"clips": n, "hours": round(hours.get(r) or 0.0, 4)} for r, n in counts["drop_reasons"]},
        }
        types = column_types(con, "clips")
        dist = {}
        for col in score_columns(types):
            row = {}
            for name, where in (("all", "TRUE"), ("kept", "drop_reason IS NULL")):
                q = ", ".join(f'quantile_cont("{col}", {p})' for p in QUANTILES)
                vals = con.execute(f'SELECT count("{col}"), {q} FROM clips WHERE {where}').fetchone()
                qs = {f"p{round(p * 100)}": _round(v) for p, v in zip(QUANTILES, vals[1:], strict=True)}
                row[name] = {"n": vals[0], **qs}
            dist[col] = row
        card["scores"] = dist
        if "caption_model" in types:
            card["captions"] = [
                {"model": m, "prompt_version": v, "status": s, "clips": n}
                for m, v, s, n in con.execute(
                    "SELECT caption_model, caption_prompt_version, caption_status, count(*) FROM clips "
                    "WHERE caption_status IS NOT NULL GROUP BY ALL ORDER BY 4 DESC"
                ).fetchall()
            ]
        else:
            card["captions"] = []
        dup = "duplicate_of" in types
        card["dedup"] = {
            "duplicates_dropped": dict(counts["drop_reasons"]).get("duplicate", 0),
            "groups": con.execute("SELECT count(DISTINCT duplicate_of) FROM clips").fetchone()[0] if dup else 0,
        }
        config = _load_json(storage.under(out, "config.json"))
        card["dedup"]["enabled"] = (config or {}).get("dedup", {}).get("enabled", True)
        # what ran, from the data (a configured model whose weights were missing stored nothing)
        clip_models = []
        if "clip_model" in types:
            sql = "SELECT DISTINCT clip_model FROM clips WHERE clip_model IS NOT NULL AND clip_embedding IS NOT NULL"
            clip_models = [m for (m,) in con.execute(sql).fetchall()] if "clip_embedding" in types else []
        captioned = [c["model"] for c in card["captions"] if c["status"] in ("ok", "flagged") and c["model"]]
        card["models"] = {
            "shot_detector": config.get("shots", {}).get("detector"),
            "clip": ", ".join(clip_models) or "not run (no CLIP scores stored)",
            "aesthetic_head": config.get("clip", {}).get("aesthetic_head") if clip_models else "not run",
            "captioner": ", ".join(dict.fromkeys(captioned)) or "not run (no captions stored)",
        }
        card["filters"] = config.get("filters", {})
        card["removals"] = _removals(out)
        card["code"] = package_versions(
            "clipforge", "ray", "pyarrow", "deltalake", "duckdb", "av", "torch", "open-clip-torch", "transformers"
        )
        return card
    finally:
        con.close()


def _removals(out) -> dict[str, Any] | str:
    """What ``clipforge remove`` took out: counts, dates and notes (never the removed sources' names: the card
    travels with the dataset)."""
    from pipeline.remove import tombstones

    stones = tombstones(out).to_pylist()
    if not stones:
        return "none recorded"
    return {
        "videos": len(stones),
        "clips": sum(t["clips"] or 0 for t in stones),
        "requests": [
            {
                "at": at,
                "videos": sum(t["removed_at"] == at for t in stones),
                "clips": sum(t["clips"] or 0 for t in stones if t["removed_at"] == at),
                "note": note,
            }
            for at, note in dict.fromkeys((t["removed_at"], t["note"]) for t in stones)
        ],
    }


def _licences_md(lic: Any) -> list[str]:
    if not isinstance(lic, dict):
        return [f"- Licences: {lic}."]
    lines = ["- Licences (ok videos; consent as recorded: yes / no / other / not given; kept clips and hours):", "",
             "| licence | videos | consent | kept clips | kept hours |", "|---|---|---|---|---|"]  # fmt: skip
    for k, v in lic.items():
        c = v["consent"]
        consent = f"{c['yes']} / {c['no']} / {c['other']} / {c['not_given']}"
        lines.append(f"| {k} | {v['videos']} | {consent} | {v['kept_clips']} | {v['kept_hours']:.3f} |")
    return [*lines, ""]


def _removals_md(r: Any) -> str:
    if not isinstance(r, dict):
        return f"Removals: {r}."
    reqs = "; ".join(
        f"{q['at']}: {q['videos']} video(s), {q['clips']} clip(s)" + (f" ({q['note']})" if q["note"] else "")
        for q in r["requests"]
    )
    return f"Removals (`clipforge remove`): {r['videos']} source video(s), {r['clips']} clips; {reqs}."


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def markdown(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    f = card["funnel"]
    status = ", ".join(f"{k} {v}" for k, v in card["inputs"]["by_status"].items())
    lines = [
        f"# Data card: {Path(str(card['dataset'])).name}",
        "",
        f"Generated {card['generated']} from the tables of `{card['dataset']}` (version {card['version']}, schema "
        f"{card['schema_version']}) by `clipforge card`. Every figure below is recomputed from the data.",
        "",
        "## Composition",
        "",
        f"- Input files: {card['inputs']['files']}"
        + (f" ({status})" if status else "")
        + f", {card['inputs']['video_hours']:.3f} h of ok video.",
        *_licences_md(card["inputs"]["licenses"]),
        f"- Shots: {f['shots']}; clips: {f['clips']} ({f['clip_hours']:.3f} h); kept: **{f['kept']}** "
        f"({f['kept_hours']:.3f} h).",
        "",
        "## Preprocessing: why clips were dropped",
        "",
        "| reason | clips | hours |",
        "|---|---|---|",
        *[f"| {r} | {v['clips']} | {v['hours']:.3f} |" for r, v in f["dropped"].items()],
        "",
        f"Dedup: {_n(card['dedup']['duplicates_dropped'], 'copy', 'copies')} dropped in "
        f"{_n(card['dedup']['groups'], 'group', 'groups')}."
        if card["dedup"]["enabled"]
        else "Dedup: disabled (`dedup.enabled = false`): copies were not looked for and are all kept.",
        "",
        "## Score distributions (all clips / kept clips)",
        "",
        "| score | n | p5 | p25 | p50 | p75 | p95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for col, d in card["scores"].items():
        for name in ("all", "kept"):
            q = d[name]
            lines.append(
                f"| {col} ({name}) | {q['n']} | "
                + " | ".join("" if q[k] is None else f"{q[k]:.4g}" for k in ("p5", "p25", "p50", "p75", "p95"))
                + " |"
            )
    lines += ["", "## Captions", ""]
    if card["captions"]:
        lines += ["| model | prompt version | status | clips |", "|---|---|---|---|"]
        lines += [
            f"| {c['model'] or '-'} | {c['prompt_version'] or '-'} | {c['status']} | {c['clips']} |"
            for c in card["captions"]
        ]
    else:
        lines.append("No captions.")
    lines += ["", "## Models and thresholds", ""]
    lines += [f"- {k}: {v}" for k, v in card["models"].items()]
    lines += [f"- filters: `{json.dumps(card['filters'], sort_keys=True)}`"]
    lines += ["", "## Versions", ""]
    lines += [f"- v{v['version']} {v['at']} {v['command']}" for v in card["versions"]] or ["- none recorded"]
    lines += [
        "",
        _removals_md(card["removals"]),
        "",
        "Code: " + ", ".join(f"{k} {v}" for k, v in card["code"].items()),
    ]
    return "\n".join(lines) + "\n"


def write_card(out: str | Path, dest: str | Path | None = None) -> dict[str, Any]:
    """Write ``card.json`` and ``card.md`` into ``dest`` (default: OUT) and return the card."""
    card = collect(out)
    where = storage.location(dest) if dest else storage.location(out)
    storage.write_text(storage.under(where, "card.json"), json.dumps(card, indent=2, default=str))
    storage.write_text(storage.under(where, "card.md"), markdown(card))
    return card
