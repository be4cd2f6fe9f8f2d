"""The ``clipforge`` command. Imports are lazy: ``clipforge scenes`` is timed as a fresh process per video."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline import config as config_mod
    from pipeline.run import run

    overrides = config_mod.parse_dotted_flags(extra)
    if args.address:
        overrides["ray.address"] = args.address
    cfg = config_mod.load(args.config, overrides)
    if args.input:
        cfg.inputs = list(args.input)
    if args.output:
        cfg.output = args.output
    if not cfg.inputs or not cfg.output:
        raise SystemExit("clipforge run needs --input and --output (or inputs/output in --config)")
    given = config_mod.read_file(args.config) if args.config else {}
    kept = _keep_saved_settings(cfg, {**config_mod.flat_settings(cfg, given), **overrides})
    if kept:
        shown = ", ".join(kept[:6]) + (" ..." if len(kept) > 6 else "")
        print(
            f"note: resumed with the thresholds saved in OUT's config.json: {shown}",
            file=sys.stderr,
        )
    summary = run(cfg)
    print(summary.text())
    return 0


def _saved_sections(cfg) -> tuple[str, ...]:
    """The sections whose values a refilter saves into OUT/config.json (and a resumed run keeps): ``filters``,
    ``dedup`` and each of the user's stages'."""
    from pipeline.config import SECTIONS

    return ("filters", "dedup", *(n for n in cfg.sections if n not in SECTIONS))


def _keep_saved_settings(cfg, given: dict) -> list[str]:
    """A run into an OUT that has a ``config.json`` (a resumed run) keeps the thresholds saved there, as a refilter
    saves them: the ``filters`` and ``dedup`` sections and those of the user's stages this run has, each key the
    command's ``--config`` and flags do not set (``given``, {"section.key": value}). Sets them on ``cfg`` and returns
    the keys whose value differs from this run's default. Other sections (how clips are cut and scored) are the
    command's: a resumed run is told them as the first run was."""
    from pipeline import config as config_mod
    from stages import storage

    path = storage.under(storage.location(cfg.output), "config.json")
    if not storage.is_file(path):
        return []
    saved = json.loads(storage.read_text(path))
    defaults = cfg.to_dict()
    changed = []
    for section in _saved_sections(cfg):
        current = defaults.get(section, {})
        for key, value in (saved.get(section) or {}).items():
            name = f"{section}.{key}"
            if name in given or key not in current or current[key] == value:
                continue
            config_mod.apply(cfg, {name: value}, where=f"{path} (saved)")
            changed.append(name)
    return changed


def _cmd_scenes(args: argparse.Namespace, extra: list[str]) -> int:
    from stages.shots import ShotsConfig, detect

    cfg = ShotsConfig()
    if args.detector:
        cfg.detector = args.detector
    if extra:
        from pipeline import config as config_mod

        for key, value in config_mod.parse_dotted_flags(extra).items():
            section, name = key.split(".", 1)
            if section != "shots":
                raise SystemExit(f"clipforge scenes takes only --shots.* settings, not --{key}")
            config_mod._set(cfg, name, value, "command line [shots]")
    result = detect(args.video, cfg)
    if args.json:
        print(json.dumps(result))
    else:
        n = len(result["scenes"])
        print(
            f"{result['video']}: {n} scenes, {result['frames']} frames, {result['duration_s']:.3f} s "
            f"(nominal {result['fps']:.3f} fps; times from the frames' timestamps)"
        )
        for i, s in enumerate(result["scenes"]):
            span = f"{s['start_s']:9.3f}s - {s['end_s']:9.3f}s"
            print(f"{i:4d}  frames {s['start_frame']:>7d}-{s['end_frame']:<7d}  {span}")
    return 0


def _print_table(table, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(table.to_pylist(), default=str, indent=1))
    elif fmt == "csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        # CSV has no lists or structs (pyarrow's writer refuses them): such a cell is written as its JSON text
        for i, f in enumerate(table.schema):
            if pa.types.is_nested(f.type):
                cells = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
                table = table.set_column(i, f.name, pa.array(cells, pa.string()))
        sink = __import__("io").BytesIO()
        pacsv.write_csv(table, sink)
        sys.stdout.write(sink.getvalue().decode())
    else:
        import duckdb

        duckdb.from_arrow(table).show(max_rows=200, max_width=10_000)


def _cmd_query(args: argparse.Namespace, extra: list[str]) -> int:
    import duckdb

    from pipeline.store import VersionNotFound, query

    fmt = "json" if args.json else "csv" if args.csv else "table"
    try:
        table = query(args.out, args.sql, version=args.version)
    except VersionNotFound as e:
        print(f"clipforge query: {e}", file=sys.stderr)
        return 2
    except duckdb.Error as e:  # a mistake in the user's SQL: DuckDB's message, not a traceback
        print(f"clipforge query: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    _print_table(table, fmt)
    return 0


def _cmd_versions(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline import store
    from stages import storage

    if not storage.exists(storage.under(args.out, "tables")):
        print(f"clipforge versions: {args.out} is not a clipforge dataset (no tables/ directory)", file=sys.stderr)
        return 2
    found = store.versions(args.out)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"{args.out} has no recorded version yet (one is recorded when a run, refilter or caption ends)")
        return 0
    for v in found:
        try:
            counts = store.query(
                args.out,
                "SELECT count(*) AS n, count(*) FILTER (drop_reason IS NULL) AS k FROM clips",
                version=v["version"],
            ).to_pylist()[0]
            said = f"clips {counts['n']:>7}  kept {counts['k']:>7}"
        except Exception:  # noqa: BLE001 - a version whose files a removal erased (one cut off before it ended)
            said = "(erased: its files are gone)"
        print(f"{v['version']:>4}  {v['at']}  {v['command']:<9} {said}  {v['argv']}")
    erased = found[0].get("erased_versions") if found[0].get("removed") else None
    if erased:
        said = f"version {erased[0]} was" if len(erased) == 1 else f"versions {erased[0]}-{erased[-1]} were"
        print(f"(earlier {said} erased by `clipforge remove` at version {found[0]['version']})")
    from pipeline.remove import PENDING

    if storage.is_file(storage.under(args.out, PENDING)):
        if store.lock_held(args.out):
            print("a `clipforge remove` is running on this OUT; the versions it erases go when it ends")
        else:
            print("a `clipforge remove` was cut off before it ended: run any `clipforge remove` on this OUT to finish "
                  "it (the sources it was removing are in `SELECT * FROM tombstones`)")  # fmt: skip
    return 0


def _cmd_remove(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.remove import SourceNotFound, remove
    from stages import storage

    def refuse(message: str) -> int:
        if args.json:  # still one JSON object on stdout
            print(json.dumps({"error": message}))
        print(f"clipforge remove: {message}", file=sys.stderr)
        return 2

    import re

    sources = list(args.source or [])
    for listing in args.list or []:
        try:
            text = sys.stdin.read() if listing == "-" else storage.read_text(listing)
        except OSError as e:
            return refuse(f"cannot read --list {listing}: {e}")
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        # a relative path in a list file is relative to the list's directory, as in run's list files; a
        # video_id (16 hex digits) is taken as it is
        base = "" if listing == "-" else storage.dirname(listing)
        sources += [
            e if not base or re.fullmatch(r"[0-9a-f]{16}", e) or storage.is_uri(e) or os.path.isabs(e)
            else storage.join(base, e)
            for e in entries
        ]  # fmt: skip
    if not sources:
        return refuse("name at least one --source or --list")
    if not storage.exists(storage.under(args.out, "tables")):
        return refuse(f"{args.out} is not a clipforge dataset (no tables/ directory)")
    from pipeline.store import OutInUse

    try:
        r = remove(args.out, sources, note=args.note, dry_run=args.dry_run)
    except SourceNotFound as e:
        return refuse(str(e))
    except OutInUse as e:
        if args.json:  # exit 75 as for every command (main), with its one JSON object
            print(json.dumps({"error": str(e)}))
        raise
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return 0
    if r.get("already_removed"):
        fixed = sum(n for n in r["exports"].values() if isinstance(n, int))
        print(f"already removed: {len(r['videos'])} video(s) tombstoned and nothing of them left in OUT"
              + (f"; {fixed} clip(s) taken out of exports made since" if fixed else "; nothing changed"))  # fmt: skip
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(r['videos'])} video(s) and {r['clips']} clip(s):")
    for v in r["videos"]:
        print(f"  {v['video_id']}  {v['path']}")
    rows = ", ".join(f"{k} {n}" for k, n in sorted(r["rows"].items()) if n) or "none"
    print(f"  rows: {rows}; clip files: {r['clip_files']}")
    for dest, n in r["exports"].items():
        print(f"  export/prepared {dest}: {n}" + (" clips taken out" if isinstance(n, int) else ""))
    if r["near_duplicates"]:
        print(f"  {len(r['near_duplicates'])} clip(s) of other sources were dropped as copies of removed clips "
              "(judged again now; remove their sources too if they are copies of the same footage):")  # fmt: skip
        for d in r["near_duplicates"]:
            print(f"    {d['clip_id']}  {d['path']}")
    if not args.dry_run:
        print(f"  tombstoned in {storage.under(args.out, 'tombstones')}: a later run leaves these sources out; "
              f"OUT is now version {r['version']} (earlier versions erased)")  # fmt: skip
    return 0


def _cmd_diff(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.report import version_diff
    from pipeline.store import VersionNotFound

    try:
        rows = version_diff(args.out, args.a, args.b)
    except VersionNotFound as e:
        print(f"clipforge diff: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    b = "now" if args.b is None else f"v{args.b}"
    print(f"clips per drop reason, v{args.a} -> {b}")
    print(f"  {'reason':<28} {'v' + str(args.a):>8} {b:>8} {'gained':>8} {'lost':>8}")
    for r in rows:
        gained, lost = (f"+{r['gained']}" if r["gained"] else "0"), (f"-{r['lost']}" if r["lost"] else "0")
        print(f"  {r['reason']:<28} {r['at_a']:>8} {r['at_b']:>8} {gained:>8} {lost:>8}")
    return 0


def _cmd_export(args: argparse.Namespace, extra: list[str]) -> int:
    import duckdb

    from pipeline.export import export

    try:
        manifest = export(
            args.out, args.format, args.dest, args.where, args.caption, args.seed, args.shard_clips, args.overwrite,
            fps=args.fps, frames=args.frames, max_frames=args.max_frames, min_frames=args.min_frames,
            buckets=args.buckets, crf=args.crf, camera_tags=args.camera_tags,
        )  # fmt: skip
    except (ValueError, duckdb.Error) as e:  # an unknown format, a mistake in the user's SQL
        print(f"clipforge export: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    c = manifest["counts"]
    left = ", ".join(f"{k} {v}" for k, v in c["left_out"].items()) or "none"
    if not c["written"]:
        no_caption = c["left_out"] and all(k.startswith("no_") and k.endswith("_caption") for k in c["left_out"])
        hint = " (try another --caption: dense and short need `clipforge caption`)" if no_caption else ""
        print(f"clipforge export: nothing to export: {c['selected']} clips selected, left out: {left}{hint}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(
        f"exported {c['written']} of {c['selected']} selected clips as {args.format} to {args.dest} (left out: {left})"
    )
    return 0


def _cmd_card(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.card import write_card
    from stages import storage

    card = write_card(args.out, args.dest)
    where = args.dest or args.out
    f = card["funnel"]
    print(f"wrote {storage.under(where, 'card.md')} and card.json: {f['kept']} of {f['clips']} clips kept")
    return 0


def _cmd_config(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline import config as config_mod

    cfg = config_mod.load(args.config, config_mod.parse_dotted_flags(extra))
    print(config_mod.dump_yaml(cfg), end="")
    return 0


def _stored_config(out: str, file: str | None, extra: list[str]):
    """The dataset's saved config.json, overridden by a file and --section.key flags."""
    from pipeline import config as config_mod
    from stages import storage

    saved = storage.under(out, "config.json")
    if not storage.is_file(saved):
        raise FileNotFoundError(f"{out} has no config.json: is it a clipforge dataset?")
    cfg = config_mod.load(saved)
    if file:
        config_mod.apply(cfg, config_mod.read_file(file), where=file)
    config_mod.apply(cfg, config_mod.parse_dotted_flags(extra), where="command line")
    return cfg


_REFILTERED = {"filters", "dedup", "store"}  # the built-in sections a refilter applies (store: how it writes)


def _warn_stale_scores(out: str) -> None:
    """Say on stderr how many clips' stored scores predate the running schema (``cpu_scores.SUPERSEDED``: a row with a
    score and without the one added after it, or one holding a value a later schema replaced): refilter re-reads
    stored scores, so such clips are judged on what an older scorer measured (schema 20 weighs the overlay test's
    colour differences as luma, schema 19 finds a frozen pair by its peak change, schema 18 tells a night look from an
    underexposed clip by its highlights, schema 17 tells a smear from depth of field over grass by its spectral
    notches, schema 15 tells a still picture by its parallax too, schema 12 looks for a logo as a fixed layer under the
    moving scene, schema 11 looks for overlays in colour too, schema 10 changed focus's and detail's scale) until a
    `clipforge run` scores them again."""
    from pipeline import store
    from stages.cpu_scores import superseded_sql, superseded_terms

    columns = set(store._columns(out, "scores"))
    terms = superseded_terms(columns=columns)
    every = superseded_sql(columns=columns)
    counts = [f"count(*) FILTER ({sql})" for _, _, sql in terms] + [f"count(*) FILTER ({every})"]
    *each, n = (c[0].as_py() for c in store.query(out, f"SELECT {', '.join(counts)} FROM clips").columns)
    if not n:
        return
    lacking = [(s, f"{k} {said} (schema {s})") for (said, s, _), k in zip(terms, each, strict=True) if k]
    newest = max(lacking, key=lambda x: int(x[0]))[0]
    print(
        f"clipforge refilter: {n} clip(s) were scored before schema {newest} ({', '.join(x[1] for x in lacking)}): "
        "the rules judged what that scorer measured (docs/SCHEMA.md says what changed; schema 20 weighs the overlay "
        "test's colour differences as luma (before it, a red logo whose luma matched the picture under it could be "
        "missed), schema 19 finds a frozen "
        "flow pair by its most-changed 1 % of the picture (before it, a darkened locked-off shot whose subject is "
        "small read frozen and was dropped as motion_static), schema 18 tells a night look "
        "from an underexposed clip by its highlights (without them, the dark rules judge as before: a night grade "
        "darker than filters.min_luma_mean is dropped), schema 17 tells a smear by its spectral notches (without "
        "them, only a strong streak drops a clip as motion-blurred), schema 15 tells a still picture by its parallax "
        "too, schema 12 finds faint logos over moving texture, schema 11 looks for overlays in colour too, schema 10 "
        "put focus and detail on another scale). `clipforge run` on this OUT with the same inputs scores them again, "
        "cutting nothing.",
        file=sys.stderr,
    )


def _changed_settings(saved: dict[str, Any], applied: dict[str, dict[str, Any]]) -> list[str]:
    """The settings a refilter changes, as ``section.key old -> new`` (JSON values: null for None): ``saved``, the
    dataset's config.json before it; ``applied``, the sections it applies (filters, dedup, user stages)."""

    out = []
    for section, values in applied.items():
        before = saved.get(section)
        if not isinstance(before, dict):  # a dataset that stored none of this section's settings
            out.append(f"{section}.* (none stored before)")
            continue
        for key, value in values.items():
            if key not in before or before[key] != value:
                old = json.dumps(before[key]) if key in before else "(unset)"
                out.append(f"{section}.{key} {old} -> {json.dumps(value)}")
    return out


def _cmd_refilter(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline import config as config_mod
    from pipeline import store
    from pipeline.config import SECTIONS
    from pipeline.report import run_counts as funnel
    from pipeline.steps import filter_clips
    from stages import storage

    # a flag refilter cannot apply is an error, not a silent no-op recorded as a version
    other = sorted({k.split(".", 1)[0] for k in config_mod.parse_dotted_flags(extra)} & (set(SECTIONS) - _REFILTERED))
    if other:
        print(
            f"clipforge refilter: {', '.join(f'--{o}.*' for o in other)} settings do not apply to stored scores; "
            "refilter re-applies the filters and dedup thresholds (and a user stage's section): those need a new "
            "`clipforge run`",
            file=sys.stderr,
        )
        return 2
    cfg = _stored_config(args.out, args.config, extra)
    with store.writer_lock(args.out, "refilter", cfg.store):
        report: dict = {}
        filter_clips(storage.location(args.out), cfg, report)
        saved = json.loads(storage.read_text(storage.under(args.out, "config.json")))
        # the thresholds refilter applied become the dataset's: filters, dedup and every user stage's section
        applied = {k: v for k, v in cfg.to_dict().items() if k in _saved_sections(cfg)}
        changed = _changed_settings(saved, applied)
        saved.update(applied)
        store.write_json(storage.under(args.out, "config.json"), saved)
    _warn_stale_scores(args.out)
    if not cfg.dedup.enabled:
        from stages.dedup import DISABLED_NOTE

        print(f"note: {DISABLED_NOTE}", file=sys.stderr)
    if not cfg.filters.shared_overlay:
        from stages.shared_overlay import DISABLED_NOTE as SHARED_OFF

        print(f"note: {SHARED_OFF}", file=sys.stderr)
    from stages.shared_overlay import refused_note

    c = funnel(args.out)
    how = "without decoding"
    if report.get("decoded"):  # the shared-overlay check's first look at some clips (stages/shared_overlay.py)
        how = f"decoding only the anchors of {report['decoded']} clip(s) for the shared-overlay check"
    print(f"refiltered {c['clips']} clips {how}: kept {c['kept']} ({c['kept_hours']:.3f} h)")
    print(f"  settings changed: {', '.join(changed)}" if changed else "  settings: as the dataset had them")
    if report.get("shown"):
        print(f"  {report['shown']} clip(s) show an overlay found in another clip of their source (overlay_seen_in)")
    if report.get("refused"):
        print(f"  {refused_note(report['refused'])}")
    # every drop reason of the dataset, those set when clips were cut included (the filters table has only its own)
    for reason, n in c["drop_reasons"]:
        print(f"  {reason:<28} {n}")
    done = store.versions(args.out)  # this refilter recorded the last one
    if len(done) >= 2:
        before, now = done[-2]["version"], done[-1]["version"]
        print(f"clips gained / lost per reason since v{before}: clipforge diff {args.out} {before}  (this is v{now})")
    return 0


def _cmd_caption(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.steps import caption_clips, text_score_clips

    cfg = _stored_config(args.out, args.config, extra)
    if args.model:
        cfg.captioner.model = args.model
    if args.recaption:
        cfg.captioner.recaption = True
    if args.address:
        cfg.ray.address = args.address
    from pipeline import store
    from stages import storage
    from stages.caption import captioning_off

    if captioning_off(cfg.captioner):  # say where that came from, and record no version
        flag = args.model or any(a.startswith("--captioner.model") for a in extra) or args.config
        where = "this command's --model, --config or flags" if flag else "OUT's saved config.json (the run's setting)"
        print(
            f"captioning disabled: captioner.model = {cfg.captioner.model or 'none'!r} from {where}; "
            "give a model: clipforge caption OUT --model PATH_OR_ID"
        )
        return 0
    with store.writer_lock(args.out, "caption", cfg.store):  # Ray starts when there is work (steps._actor_stage)
        out = storage.location(args.out)
        notes = caption_clips(out, cfg, where=args.where) or ["nothing to caption"]
        for note in notes + text_score_clips(out, cfg):
            print(note)
    return 0


def _cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.report import main as report_main

    return report_main(args)


def _cmd_view(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.viewer import main as viewer_main

    return viewer_main(args)


def _cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from pipeline.demo import main as demo_main

    return demo_main(args, extra)


def _overrides() -> str:
    """The --section.key help every command that takes settings shows (the sections from pipeline.config)."""
    from pipeline.config import SECTIONS

    return (
        f"Any setting can be overridden with --section.key VALUE (sections: {', '.join(SECTIONS)}; a user stage's "
        "section by its name), e.g. --filters.min_focus 0.5. `clipforge config` prints every key with its default."
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipforge",
        description="Curate a raw video corpus into a captioned text-to-video dataset on Ray, and train a DiT on it.",
        epilog=_overrides(),
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the pipeline over input videos into OUT", epilog=_overrides())
    r.add_argument("--input", "-i", action="append", help="a directory, glob, video file or list file (repeatable)")
    r.add_argument("--output", "-o", help="dataset directory OUT")
    r.add_argument("--config", "-c", help="TOML or YAML file overriding the defaults")
    r.add_argument("--address", help="Ray cluster address (default: a local Ray on this machine)")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("scenes", help="shot list of one video")
    s.add_argument("video")
    s.add_argument("--json", action="store_true", help="print exactly one JSON object")
    s.add_argument("--detector", help="hybrid (default), content, adaptive or transnetv2")
    s.set_defaults(func=_cmd_scenes)

    q = sub.add_parser("query", help="run SQL over OUT with DuckDB (views: videos, shots, clips, kept)")
    q.add_argument("out")
    q.add_argument("sql")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true")
    g.add_argument("--csv", action="store_true")
    q.add_argument("--version", type=int, help="read OUT as of this version (`clipforge versions OUT` lists them)")
    q.set_defaults(func=_cmd_query)

    rm = sub.add_parser(
        "remove",
        help="remove sources and everything made from them (rows, clips, exports); keep them out",
        description="Delete every row, clip file and export/prepared copy derived from the named sources (and "
        "their exact copies), erase the table history that held them, and tombstone them so later runs leave them "
        "out. README: 'Remove a source'.",
    )
    rm.add_argument("out", help="the dataset directory (or bucket prefix)")
    rm.add_argument(
        "--source",
        action="append",
        help="a source's path/URI as in the videos table (a relative path is taken from the current directory), "
        "or its video_id (repeatable)",
    )
    rm.add_argument(
        "--list",
        action="append",
        help="a file of sources, one per line, # comments; relative paths from the list's directory "
        "('-': stdin, relative to the current directory; repeatable)",
    )
    rm.add_argument("--note", help="why (a ticket, a request): kept in the tombstone")
    rm.add_argument("--dry-run", action="store_true", help="say what would be removed; change nothing")
    rm.add_argument("--json", action="store_true", help="print the result as one JSON object")
    rm.set_defaults(func=_cmd_remove)

    ex = sub.add_parser(
        "export",
        help="write the kept clips for another trainer: webdataset, folder, hf or csv",
        description="Write the kept clips (or those --where selects) with one caption each, in the layout another "
        "trainer reads; optionally normalised (frame rate, 4k+1 frames, buckets). docs/EXPORT.md has a guide per "
        "trainer.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ex.add_argument("out", help="the dataset directory (or bucket prefix)")
    ex.add_argument("--format", required=True, choices=["webdataset", "folder", "hf", "csv"])
    ex.add_argument("--dest", required=True, help="directory to write (created)")
    ex.add_argument("--where", help="SQL condition over the kept view (default: every kept clip)")
    ex.add_argument(
        "--caption",
        default="dense",
        choices=["dense", "short", "original", "mix"],
        help="which caption goes in: the VLM's dense or short one, the source's own, or a seeded per-clip mix",
    )
    ex.add_argument("--seed", type=int, default=0, help="seed of the per-clip caption draw (--caption mix)")
    ex.add_argument("--shard-clips", type=int, default=1000, help="clips per tar shard / Parquet file (>= 1)")
    ex.add_argument("--overwrite", action="store_true", help="empty DEST first if it holds files")
    ex.add_argument(
        "--camera-tags", action="store_true", help='append the camera move to each caption ("The camera pans left.")'
    )
    norm = ex.add_argument_group(
        "normalisations (folder, webdataset, hf; clips re-encoded with libx264, no audio; docs/EXPORT.md)"
    )
    norm.add_argument("--fps", help="re-time every clip to this constant rate (e.g. 16, 24, 30000/1001); never blends")
    norm.add_argument("--frames", metavar="4k+1", help="cut every clip to a frame count of this form (4k+1, 8k+1)")
    norm.add_argument("--max-frames", type=int, help="at most this many frames per clip (of the --frames form)")
    norm.add_argument("--min-frames", type=int, help="leave out clips with fewer frames left (default 1)")
    norm.add_argument("--buckets", help="bucket YAML (as prepare's): resize + centre-crop to the bucket, never up")
    norm.add_argument("--crf", type=int, default=18, help="libx264 constant quality of re-encoded clips (0-51)")
    ex.set_defaults(func=_cmd_export)

    cd = sub.add_parser("card", help="write a data card of OUT (card.md + card.json), regenerated from its tables")
    cd.add_argument("out")
    cd.add_argument("--dest", help="directory for card.md and card.json (default: OUT)")
    cd.set_defaults(func=_cmd_card)

    vs = sub.add_parser("versions", help="list OUT's versions (one per finished run, refilter, caption)")
    vs.add_argument("out")
    vs.add_argument("--json", action="store_true")
    vs.set_defaults(func=_cmd_versions)

    df = sub.add_parser("diff", help="funnel difference between two versions of OUT: clips gained/lost per reason")
    df.add_argument("out")
    df.add_argument("a", type=int, help="the older version")
    df.add_argument("b", type=int, nargs="?", help="the newer version (default: OUT as it is now)")
    df.add_argument("--json", action="store_true")
    df.set_defaults(func=_cmd_diff)

    c = sub.add_parser(
        "config", help="print the resolved configuration (defaults, file, flags) as YAML", epilog=_overrides()
    )
    c.add_argument("--config", "-c")
    c.set_defaults(func=_cmd_config)

    f = sub.add_parser(
        "refilter",
        help="re-apply filter/dedup thresholds from stored scores (decodes nothing)",
        epilog="Thresholds are --filters.KEY VALUE and --dedup.KEY VALUE flags (and a user stage's section), e.g. "
        "--filters.min_focus 0.5; `clipforge config` prints every key with its default. Other sections need a new "
        "`clipforge run`.",
    )
    f.add_argument("out")
    f.add_argument(
        "--config", "-c", help="TOML/YAML with [filters] and [dedup] sections (or --filters.KEY VALUE flags)"
    )
    f.set_defaults(func=_cmd_refilter)

    cap = sub.add_parser("caption", help="(re)caption clips of an existing dataset with a VLM", epilog=_overrides())
    cap.add_argument("out")
    cap.add_argument("--where", help="SQL condition over the clips view (default: kept clips)")
    cap.add_argument("--model", help="Hugging Face id or local directory of the VLM")
    cap.add_argument("--recaption", action="store_true", help="redo clips already captioned by this model+prompt")
    cap.add_argument("--config", "-c")
    cap.add_argument("--address", help="Ray cluster address")
    cap.set_defaults(func=_cmd_caption)

    from pipeline import report as report_mod
    from pipeline import viewer as viewer_mod

    rp = sub.add_parser("report", help="write a self-contained HTML report of OUT (funnel, drops, histograms)")
    report_mod.add_arguments(rp)
    rp.set_defaults(func=_cmd_report)
    vp = sub.add_parser("view", help="browse OUT's clips in a local web app (SQL filter, sort, playback)")
    viewer_mod.add_arguments(vp)
    vp.set_defaults(func=_cmd_view)

    for name, (_, help_text) in TRAINING_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # dispatched in main() before parsing

    d = sub.add_parser("demo", help="build a small real corpus from the shipped sample footage and run the pipeline")
    d.add_argument("--output", "-o", default="demo-out", help="where to put the corpus and the dataset")
    d.add_argument("--train-steps", type=int, default=300, help="tiny DiT training steps after curation (0: none)")
    d.set_defaults(func=_cmd_demo)
    return p


# Training commands import torch and friends (seconds): their modules are imported only when chosen, and they
# parse their own flags.
TRAINING_COMMANDS = {
    "prepare": ("training.prepare", "encode a SQL-selected subset into latent + text-embedding training shards"),
    "train": ("training.train", "train a DiT on prepared shards (Ray Train with --workers N)"),
    "train-vae": ("training.autoencoder", "train the small spacetime autoencoder (a latent codec) on curated clips"),
    "sample": ("training.sample", "sample a video from a trained checkpoint (text, image-to-video, extension)"),
}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done, 2 a user error (bad flag, config, path, SQL), 75 (``EX_TEMPFAIL``) the
    environment failed (disk full, out of memory, store unreachable: ``stages.errors``) and the same command, rerun
    once it is fixed, redoes exactly the work that was lost."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except BrokenPipeError:  # `clipforge query ... | head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's recipe: no second error at exit
        return 0
    except Exception as e:
        from pipeline.store import OutInUse
        from stages.errors import EXIT_ENVIRONMENT, find_fault, in_chain

        name = argv[0] if argv else "clipforge"
        busy = in_chain(e, OutInUse)
        if busy is not None:
            print(f"clipforge {name}: nothing done: {busy}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        fault = find_fault(e)
        if fault is None:
            raise
        print(
            f"clipforge {name}: STOPPED by an error of the environment, not of the input: {fault}\n"
            f"Nothing it was doing was recorded as a defect. Fix the cause and rerun the same command: it redoes "
            f"exactly the unfinished work.",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT


def _main(argv: list[str]) -> int:
    if argv and argv[0] in TRAINING_COMMANDS:
        import importlib

        module = importlib.import_module(TRAINING_COMMANDS[argv[0]][0])
        parser = argparse.ArgumentParser(prog=f"clipforge {argv[0]}", description=TRAINING_COMMANDS[argv[0]][1])
        module.add_arguments(parser)
        return module.main(parser.parse_args(argv[1:]))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    from pipeline.config import ConfigError

    try:
        return args.func(args, extra)
    except (FileNotFoundError, ConfigError) as e:
        # user errors: one clear line, no traceback
        print(f"clipforge {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
