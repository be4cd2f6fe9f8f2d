"""``clipforge remove``: take sources out of a dataset with everything made from them, and keep them out.

A takedown request names a source (its path or URI as the ``videos`` table has it, or its ``video_id``). Removing it
deletes, under OUT and in what OUT knows was made from it:

- its ``videos`` row and those of every other file with the same content (``content_hash``: the copies the run
  marked ``duplicate`` and the original they copy are one piece of footage);
- its rows in every table keyed by ``video_id`` (videos, shots, clips) and its clips' rows in every table keyed by
  ``clip_id`` (scores, clip_scores, captions, text_scores, filters, a user's own stage tables);
- its clip files (``OUT/clips/...``);
- the history that held them: each table's old Parquet files and Delta log (a Delta time travel to before the
  removal would bring the rows back), so OUT's versions before the removal are erased (``clipforge versions`` starts
  at the removal; ``query --version`` of an earlier one says it was erased);
- its clips in every export and prepared training set made from OUT (``clipforge export`` and ``clipforge-prepare``
  register their destination in ``OUT/exports/``): samples dropped from webdataset tars, rows from Parquet/CSV/JSONL
  files, ``<clip_id>.*`` files deleted, the manifest's counts and file list corrected, the removal recorded in it;
- ``OUT/report.html`` is written again if there is one.

Then ``filters`` are computed again with the dataset's stored config (``clipforge refilter``'s step): a clip of
another source that dedup had dropped as a copy of a removed clip is judged again among the clips left. Such clips
are listed in the result (``near_duplicates``): copies of the footage under another source, which the requester may
want removed too.

A tombstone per removed video (``OUT/tombstones``, a Delta table: video_id, path, content_hash, when, by which
command, the note given) keeps the source out: a later ``clipforge run`` leaves out any input whose path or content
hash is tombstoned, and says how many it left out. The tombstone is the one place the source is still named: it is
the record that the takedown happened.

Not reached: copies made outside clipforge (a file copied out of an export by hand), exports whose destination was
moved or deleted since (listed as ``missing``), and the command lines in OUT's version history before the removal
are erased with it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from stages import storage

TOMBSTONES = "tombstones"  # OUT/tombstones: a Delta table, one row per removed video
PENDING = ".removing"  # OUT/.removing: a removal began and has not finished; running it again finishes it
EXPORTS = "exports"  # OUT/exports/<time>-<id>.json: one record per export / prepared set made from OUT
TOMBSTONE_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("content_hash", pa.string()),
        ("removed_at", pa.string()),  # ISO 8601, local time with offset
        ("clips", pa.int64()),  # clip rows removed with it
        ("clip_ids", pa.list_(pa.string())),  # their ids (a rerun of a removal cut off half-way finishes with them)
        ("note", pa.string()),  # what the requester gave (--note): a ticket, a reason
        ("command", pa.string()),
    ]
)
_CHUNK = 500  # ids per Delta delete predicate


class SourceNotFound(ValueError):
    """A named source is neither a ``videos`` path nor a ``video_id`` of OUT (nothing was removed)."""


# ------------------------------------------------------------------------------------------- registry


def register(out: str | Path, kind: str, dest: str | Path, manifest: dict[str, Any]) -> str | None:
    """Record in ``OUT/exports/`` that ``dest`` holds clips of OUT (``kind``: export or prepare), so
    :func:`remove` finds it. Returns the record's path, or None (with a warning on stderr) when OUT cannot be
    written: the export stands, but a later removal will not reach it."""
    import sys

    dest_s = str(dest) if storage.is_uri(str(dest)) else os.path.abspath(str(dest))
    record = {
        "kind": kind,
        "dest": dest_s,
        "format": manifest.get("format", kind),
        "created": _iso(manifest.get("created")),
        "where": manifest.get("where", manifest.get("query")),
    }
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.json"
    path = storage.under(out, f"{EXPORTS}/{name}")
    try:
        if not storage.is_uri(path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        storage.write_text(path, json.dumps(record, indent=2))
        return str(path)
    except OSError as e:
        print(
            f"clipforge: warning: could not register {dest_s} in {out} ({e}); `clipforge remove` will not reach it",
            file=sys.stderr,
        )
        return None


def _iso(when: Any) -> str:
    """A manifest's creation time as ISO 8601 text (prepare's is epoch seconds); now when it has none."""
    if isinstance(when, (int, float)):
        return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))
    return str(when) if when else time.strftime("%Y-%m-%dT%H:%M:%S%z")


def registered(out: str | Path) -> list[dict[str, Any]]:
    """The exports and prepared sets registered in OUT, oldest first (each with ``record``: its file)."""
    found = []
    for path in storage.glob(storage.under(out, EXPORTS), "*.json"):
        try:
            found.append({**json.loads(storage.read_text(path)), "record": str(path)})
        except (OSError, ValueError):
            continue
    return found


# ------------------------------------------------------------------------------------------- tombstones


def tombstones(out: str | Path) -> pa.Table:
    """OUT's tombstones (:data:`TOMBSTONE_SCHEMA`); empty when nothing was removed."""
    from pipeline import store

    path = storage.under(out, TOMBSTONES)
    if not store._is_delta(path):
        return TOMBSTONE_SCHEMA.empty_table()
    from deltalake import DeltaTable

    return DeltaTable(str(path), storage_options=storage.delta_options(path)).to_pyarrow_table()


def keep_out(
    out: str | Path, inputs: list[dict[str, Any]], hashes: dict[str, str | None]
) -> tuple[list[dict[str, Any]], int]:
    """``inputs`` (ingest rows) without those a tombstone names, by path or by content hash (``hashes``: path ->
    planned content hash); returns (kept rows, number left out)."""
    stones = tombstones(out)
    if not stones.num_rows:
        return inputs, 0
    paths = set(stones.column("path").to_pylist())
    content = {h for h in stones.column("content_hash").to_pylist() if h}
    kept = [r for r in inputs if r["path"] not in paths and hashes.get(r["path"]) not in content]
    return kept, len(inputs) - len(kept)


# ------------------------------------------------------------------------------------------- remove


def resolve(out: str | Path, sources: list[str]) -> list[dict[str, Any]]:
    """The ``videos`` rows the named sources mean: each by exact path/URI (a local path is made absolute first) or
    video_id, plus every video with the same content hash or recorded as a duplicate of one of them. Raises
    :class:`SourceNotFound` naming every source that matches nothing."""
    import duckdb

    from pipeline import store

    src = (
        store._source(out, "videos")
        or "(SELECT NULL::VARCHAR AS video_id, NULL::VARCHAR AS path, "
        "NULL::VARCHAR AS content_hash, NULL::VARCHAR AS duplicate_of WHERE FALSE)"
    )
    names = [s.strip() for s in sources if s and s.strip()]
    wanted = names + [os.path.abspath(s) for s in names if not storage.is_uri(s)]
    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.register("wanted", pa.table({"s": pa.array(wanted, pa.string())}))
        # a tombstoned source is still found: a removal cut off half-way is finished by running it again
        con.register("stones", tombstones(out).select(["video_id", "path", "content_hash"]))
        hit = con.sql(
            f"SELECT video_id, path, content_hash FROM (SELECT video_id, path, content_hash FROM {src} "
            "UNION ALL SELECT * FROM stones) "
            "WHERE path IN (SELECT s FROM wanted) OR video_id IN (SELECT s FROM wanted)"
        ).to_arrow_table()
        found = set(hit.column("path").to_pylist()) | set(hit.column("video_id").to_pylist())
        missing = [s for s in names if s not in found and os.path.abspath(s) not in found]
        if missing:
            raise SourceNotFound(
                f"not in {out} (no videos path or video_id): {', '.join(missing)}; nothing was removed "
                '(`clipforge query OUT "SELECT video_id, path FROM videos"` lists them)'
            )
        con.register("hit", hit)
        rows = con.sql(
            f"SELECT DISTINCT ON (video_id) video_id, path, content_hash FROM (SELECT video_id, path, content_hash "
            f"FROM {src} WHERE video_id IN (SELECT video_id FROM hit) "
            "OR content_hash IN (SELECT content_hash FROM hit WHERE content_hash IS NOT NULL) "
            "OR duplicate_of IN (SELECT video_id FROM hit) UNION ALL SELECT * FROM hit) ORDER BY video_id"
        ).to_arrow_table()
    finally:
        con.close()
    return sorted(rows.to_pylist(), key=lambda r: r["path"] or "")


def _scope(out, sources: list[str]) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]], list[str]]:
    """What removing ``sources`` touches: (videos rows, their ids, their stored clip rows, every clip id: stored or
    named by their tombstones)."""
    videos = resolve(out, sources)
    ids = [v["video_id"] for v in videos]
    clips = _clip_rows(out, ids)
    return videos, ids, clips, sorted({c["clip_id"] for c in clips} | _tombstoned_clips(out, ids))


def _named(videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"video_id": v["video_id"], "path": v["path"]} for v in videos]


def remove(out: str | Path, sources: list[str], *, note: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Remove ``sources`` (paths/URIs or video ids) and everything derived from them (see the module docstring);
    returns what was removed: ``videos`` (rows: video_id, path), ``clips`` (count), ``rows`` (table -> rows
    deleted), ``clip_files`` (deleted), ``exports`` (dest -> clips removed, or "missing"), ``near_duplicates``
    (clips of other sources that dedup had dropped as copies of removed ones: clip_id, video_id, path),
    ``version`` (OUT's version after the removal), ``already_removed`` (True when nothing was left to remove).
    ``dry_run``: find and count, change nothing.

    Holds OUT's writer lock (``store.writer_lock``; raises ``store.OutInUse``). Raises :class:`SourceNotFound`
    before changing anything when a source is not in OUT. ``OUT/.removing`` marks a removal begun and not
    finished (a killed one): while it is there the same command does the whole removal again, which finishes it."""
    from pipeline import store

    out = storage.location(out)
    if dry_run:
        return _dry_run(out, sources)
    marker = storage.under(out, PENDING)
    if not storage.is_file(marker):
        done = _already_removed(out, sources)
        if done is not None:
            return done
    # the sources are named in the tombstones only: OUT's lock file and version history get "<removed>"
    hidden = {*sources, *(os.path.abspath(s) for s in sources if not storage.is_uri(s))}
    with store.writer_lock(out, "remove", redact=hidden) as version_meta:
        # a removal cut off earlier is finished with this one, whatever this one names (its ids are in the marker)
        pending = json.loads(storage.read_text(marker)).get("video_ids", []) if storage.is_file(marker) else []
        videos, ids, clips, clip_ids = _scope(out, [*sources, *pending])
        result: dict[str, Any] = {
            "videos": _named(videos),
            "clips": len(clip_ids),
            "near_duplicates": _near_duplicates(out, clip_ids),
            "already_removed": False,
        }
        # the marker holds video ids only (the tombstones name the sources)
        storage.write_text(marker, json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "video_ids": ids}))
        # tombstones first (the sources stay out whatever happens next); then files, then rows by clip, then clips,
        # shots, videos; then exports, the tables' history, config.json; what is left names what is still to do
        _tombstone(out, videos, clips, note)
        result["clip_files"] = _delete_clip_files(out, clips)
        result["rows"] = _delete_rows(out, ids, clip_ids)
        if clip_ids:
            _refilter(out)
        result["exports"] = {r["dest"]: _scrub_dest(r, set(clip_ids), set(ids)) for r in registered(out)}
        erased = [v["version"] for v in store.versions(out)]
        for name in store._table_names(out):
            erase_history(store.table_dir(out, name))
        _redact_config(out, {*hidden, *(v["path"] for v in videos if v["path"])})
        # counts only: the ids are in the tombstones, the one place that names what was removed
        version_meta["removed"] = {"videos": len(ids), "clips": len(clip_ids), "note": note}
        version_meta["erased_versions"] = erased
    # the removal is now a version: the log entries of the versions before it go (their command lines may name a
    # source), and what OUT derives from the tables is written again, naming the version it describes
    erase_history(storage.under(out, store.VERSIONS), vacuum=False)
    _rewrite_derived(out)
    storage.remove(marker)
    result["version"] = store.versions(out)[-1]["version"]
    return result


def _dry_run(out, sources: list[str]) -> dict[str, Any]:
    """What :func:`remove` would do, counted; nothing changes."""
    videos, ids, clips, clip_ids = _scope(out, sources)
    rows = _count_rows(out, ids, clip_ids)
    stoned = set(tombstones(out).column("video_id").to_pylist())
    files = sum(1 for c in clips if c.get("clip_path") and storage.is_file(storage.under(out, c["clip_path"])))
    return {
        "videos": _named(videos),
        "clips": len(clip_ids),
        "near_duplicates": _near_duplicates(out, clip_ids),
        "rows": rows,
        "clip_files": files,
        "exports": {
            r["dest"]: ("would be checked" if storage.exists(r["dest"]) else "missing") for r in registered(out)
        },
        "already_removed": set(ids) <= stoned
        and not any(rows.values())
        and not storage.is_file(storage.under(out, PENDING)),
    }


def _redact_config(out, names: set[str]) -> None:
    """``config.json``'s inputs without the removed sources named directly (``--input`` a video): "<removed>"."""
    path = storage.under(out, "config.json")
    if not storage.is_file(path):
        return
    cfg = json.loads(storage.read_text(path))
    inputs = cfg.get("inputs") or []

    def named(i: str) -> bool:  # as stored, or a relative --input (typed from wherever the run was started)
        if i in names:
            return True
        rel = os.path.normpath(i) if not storage.is_uri(i) and not os.path.isabs(i) else None
        return bool(rel) and rel != "." and any(n.endswith(os.sep + rel) for n in names)

    if any(named(i) for i in inputs):
        cfg["inputs"] = ["<removed>" if named(i) else i for i in inputs]
        storage.write_text(path, json.dumps(cfg, indent=2))


def _already_removed(out, sources: list[str]) -> dict[str, Any] | None:
    """The result of removing sources that are all tombstoned already with nothing of them left in the tables:
    the registered exports are checked again (a removal cut off before them), nothing else is touched, no version
    is recorded. None when there is something to remove."""
    from pipeline import store

    stones = tombstones(out)
    if not stones.num_rows:
        return None
    videos, ids, _, clip_ids = _scope(out, sources)
    if not set(ids) <= set(stones.column("video_id").to_pylist()):
        return None
    if any(_count_rows(out, ids, clip_ids).values()):
        return None  # a removal cut off half-way: finish it
    exports = {r["dest"]: _scrub_dest(r, set(clip_ids), set(ids)) for r in registered(out)}
    return {
        "videos": _named(videos),
        "clips": 0,
        "already_removed": True,
        "near_duplicates": [],
        "rows": {},
        "clip_files": 0,
        "exports": exports,
        "version": (store.versions(out) or [{"version": None}])[-1]["version"],
    }


def _rewrite_derived(out) -> None:
    """Write again what OUT holds derived from the tables, so it cannot describe removed sources: report.html and
    the data card (card.md / card.json), where they exist."""
    if storage.is_file(storage.under(out, "report.html")):
        from pipeline.report import write_report

        write_report(out)
    if storage.is_file(storage.under(out, "card.json")) or storage.is_file(storage.under(out, "card.md")):
        from pipeline.card import write_card

        write_card(out)


def _tombstoned_clips(out, video_ids: list[str]) -> set[str]:
    stones = tombstones(out).to_pylist()
    return {c for t in stones if t["video_id"] in set(video_ids) for c in (t.get("clip_ids") or [])}


def _clip_rows(out, video_ids: list[str]) -> list[dict[str, Any]]:
    import duckdb

    from pipeline import store

    src = store._source(out, "clips")
    if src is None or not video_ids:
        return []
    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.register("ids", pa.table({"video_id": pa.array(video_ids, pa.string())}))
        return (
            con.sql(f"SELECT clip_id, video_id, clip_path FROM {src} SEMI JOIN ids USING (video_id) ORDER BY clip_id")
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()


def _near_duplicates(out, clip_ids: list[str]) -> list[dict[str, Any]]:
    """Clips of other sources whose filters row names a removed clip as the copy dedup kept."""
    import duckdb

    from pipeline import store

    src, videos, clips = (store._source(out, n) for n in ("filters", "videos", "clips"))
    if not clip_ids or src is None or clips is None or "duplicate_of" not in store._columns(out, "filters"):
        return []
    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.register("gone", pa.table({"clip_id": pa.array(clip_ids, pa.string())}))
        return (
            con.sql(
                f"SELECT f.clip_id, c.video_id, v.path, f.duplicate_of FROM {src} f JOIN {clips} c USING (clip_id) "
                f"LEFT JOIN {videos} v USING (video_id) WHERE f.duplicate_of IN (SELECT clip_id FROM gone) "
                "AND f.clip_id NOT IN (SELECT clip_id FROM gone) ORDER BY f.clip_id"
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()


def _key(out, name: str) -> str | None:
    from pipeline import store

    cols = store._columns(out, name)
    return "video_id" if "video_id" in cols else "clip_id" if "clip_id" in cols else None


def _count_rows(out, video_ids: list[str], clip_ids: list[str]) -> dict[str, int]:
    import duckdb

    from pipeline import store

    counts = {}
    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.register("ids", pa.table({"id": pa.array(video_ids + clip_ids, pa.string())}))
        for name in store._table_names(out):
            key, src = _key(out, name), store._source(out, name)
            if key and src:
                sql = f"SELECT count(*) FROM {src} WHERE {key} IN (SELECT id FROM ids)"
                counts[name] = con.execute(sql).fetchall()[0][0]
    finally:
        con.close()
    return counts


def _delete_rows(out, video_ids: list[str], clip_ids: list[str]) -> dict[str, int]:
    """Delta DELETE of the removed rows in every table (by video_id where the table has it, else clip_id)."""
    from pipeline import store

    deleted = {}
    order = {"clips": 1, "shots": 2, "videos": 3}  # tables keyed by clip_id first, videos last
    for name in sorted(store._table_names(out), key=lambda n: (order.get(n, 0), n)):
        key = _key(out, name)
        dt = store.delta_table(out, name)
        if key is None or dt is None:
            continue
        ids = video_ids if key == "video_id" else clip_ids
        n = 0
        for i in range(0, len(ids), _CHUNK):
            listed = ", ".join("'" + x.replace("'", "''") + "'" for x in ids[i : i + _CHUNK])
            n += int(dt.delete(f"{key} IN ({listed})").get("num_deleted_rows", 0))
        deleted[name] = n
    return deleted


def _delete_clip_files(out, clips: list[dict[str, Any]]) -> int:
    n = 0
    for c in clips:
        if not c.get("clip_path"):
            continue
        path = storage.under(out, c["clip_path"])
        try:
            storage.remove(path)
            n += 1
        except FileNotFoundError:
            pass
        if not storage.is_uri(path):  # its folder, named by the clip id's first characters, when left empty
            with contextlib.suppress(OSError):
                Path(path).parent.rmdir()
    return n


def _refilter(out) -> None:
    """Filters and dedup again among the clips left, with the dataset's stored config (``clipforge refilter``)."""
    from pipeline import config as config_mod
    from pipeline import store
    from pipeline.steps import filter_clips
    from pipeline.stream import use_stages

    saved = storage.under(out, "config.json")
    if store._source(out, "clips") is None or not storage.is_file(saved):
        return
    cfg = config_mod.load(saved)
    use_stages(cfg.stages)
    filter_clips(out, cfg)


def _tombstone(out, videos: list[dict[str, Any]], clips: list[dict[str, Any]], note: str | None) -> None:
    from deltalake import write_deltalake

    from pipeline import store

    per_video: dict[str, list[str]] = {}
    for c in clips:
        per_video.setdefault(c["video_id"], []).append(c["clip_id"])
    done = set(tombstones(out).column("video_id").to_pylist())
    at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = [
        {
            "video_id": v["video_id"],
            "path": v["path"],
            "content_hash": v["content_hash"],
            "removed_at": at,
            "clips": len(per_video.get(v["video_id"], [])),
            "clip_ids": per_video.get(v["video_id"], []),
            "note": note,
            "command": store.command_line(),
        }
        for v in videos
        if v["video_id"] not in done
    ]
    if not rows:
        return
    path = str(storage.under(out, TOMBSTONES))
    write_deltalake(
        path,
        pa.Table.from_pylist(rows, schema=TOMBSTONE_SCHEMA),
        mode="append",
        configuration=store.TABLE_PROPERTIES,
        storage_options=storage.delta_options(path),
    )


def erase_history(path, vacuum: bool = True) -> None:
    """Make a Delta table's current version its only one: its files no version after now uses are deleted (VACUUM,
    retention 0, full; unless ``vacuum`` is False) and its log before a new checkpoint is deleted
    (``cleanup_metadata`` with ``delta.logRetentionDuration`` 0, set first where the table has another; automatic
    cleanup stays off, ``store.TABLE_PROPERTIES``). Time travel to an earlier version fails afterwards."""
    from deltalake import DeltaTable

    from pipeline import store

    path = str(path)
    if not store._is_delta(path):
        return
    options = storage.delta_options(path)
    dt = DeltaTable(path, storage_options=options)
    if vacuum:
        dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    wanted = {**store.TABLE_PROPERTIES, "delta.logRetentionDuration": "interval 0 seconds"}
    if any(dt.metadata().configuration.get(k) != v for k, v in wanted.items()):
        dt.alter.set_table_properties(wanted)
        dt = DeltaTable(path, storage_options=options)
    dt.create_checkpoint()
    dt.cleanup_metadata()


# ------------------------------------------------------------------------------------------- exports


def _scrub_dest(record: dict[str, Any], clip_ids: set[str], video_ids: set[str]) -> int | str:
    """Remove the clips ``clip_ids`` (and rows naming ``video_ids``) from one registered export or prepared set.
    Returns the number of clips taken out, or "missing" when its destination is gone."""
    dest = record["dest"]
    if not storage.exists(dest):
        return "missing"
    if not clip_ids and not video_ids:
        return 0
    ids = clip_ids | video_ids
    removed: set[str] = set()
    for path in _files(dest):
        name = path.rsplit("/", 1)[-1]
        stem = name.split(".", 1)[0]
        if stem in ids:  # folder layout: <clip_id>.mp4 / .txt / .json
            storage.remove(path)
            removed.add(stem)
        elif name.endswith(".tar"):
            removed |= _scrub_tar(path, ids)
        elif name.endswith(".parquet"):
            removed |= _scrub_parquet(path, ids)
        elif name.endswith((".csv", ".tsv")):
            removed |= _scrub_csv(path, ids, "\t" if name.endswith(".tsv") else ",")
        elif name.endswith(".jsonl"):
            removed |= _scrub_lines(path, ids)
    n = len(removed & clip_ids)
    if record.get("format") == "hf":
        _tidy_hf(dest)
    manifest = storage.under(dest, "manifest.json")
    if storage.is_file(manifest):
        m = json.loads(storage.read_text(manifest))
        left = {c for ids_ in (m.get("left_out_ids") or {}).values() for c in ids_} & clip_ids
        before = (m.get("counts") or {}).get("written")
        present = _count_present(dest, record) if record.get("kind") != "prepare" else None
        # counted from what the export holds now, so a removal cut off between the files and this manifest is
        # corrected by the rerun, which finds nothing left to delete
        if n or left or (present is not None and present != before):
            if "files" in m:
                m["files"] = [f for f in m["files"] if f.rsplit("/", 1)[-1].split(".", 1)[0] not in ids]
                m["files"] = [f for f in m["files"] if storage.exists(storage.under(dest, f))]
            _correct_counts(m, present, clip_ids, dest, record.get("kind"))
            gone = (before - m["counts"]["written"]) if isinstance(before, int) else n
            m.setdefault("removed", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "clips": gone + len(left)})
            storage.write_text(manifest, json.dumps(m, indent=2, sort_keys=record.get("kind") == "prepare"))
    return n


def _count_present(dest: str, record: dict[str, Any]) -> int | None:
    """How many clips an export holds now: webdataset samples, hf rows, csv rows, folder clip files."""
    import pyarrow.parquet as pq

    files = _files(dest)
    fmt = record.get("format")
    if fmt == "webdataset":
        keys = set()
        for f in (f for f in files if f.endswith(".tar")):
            with tarfile.open(fileobj=io.BytesIO(_read(f))) as t:
                keys |= {m.name.rsplit("/", 1)[-1].split(".", 1)[0] for m in t.getmembers() if m.isfile()}
        return len(keys)
    if fmt == "hf":
        return sum(pq.ParquetFile(io.BytesIO(_read(f))).metadata.num_rows for f in files if f.endswith(".parquet"))
    if fmt == "csv":
        return sum(max(0, len(list(csv.reader(io.StringIO(_read(f).decode("utf-8"))))) - 1)
                   for f in files if f.endswith(".csv"))  # fmt: skip
    if fmt == "folder":
        return sum(1 for f in files if f.endswith(".mp4"))
    return None


def _correct_counts(m: dict[str, Any], present: int | None, clip_ids: set[str], dest: str, kind: str | None) -> None:
    """The manifest's counts without the removed clips: an export's written (``present``: what it holds now), left
    out (by the ids it recorded per reason, ``left_out_ids``) and selected (their sum), its normalisation errors
    without them (its other normalisation statistics stay as written and are marked so); a prepared set's counts
    recomputed from its shards (every clip it was given has a row there: written, or with the reason it was
    skipped)."""
    counts = m.setdefault("counts", {})
    if kind == "prepare":
        import pyarrow.parquet as pq

        from training.data import _histogram

        files = [f for f in _files(dest) if f.endswith(".parquet")]
        cols = ["bucket", "caption_source", "license", "error"]
        tables = [pq.read_table(io.BytesIO(_read(f))) for f in files]
        rows = [r for t in tables for r in t.select([c for c in cols if c in t.column_names]).to_pylist()]
        ok = [r for r in rows if r.get("error") is None]
        counts["clips_in"], counts["written"] = len(rows), len(ok)
        counts["skipped"] = _histogram(
            r["error"].split(":")[0] if r["error"].startswith("error_") else r["error"] for r in rows if r["error"]
        )
        counts["per_bucket"] = _histogram(r["bucket"] for r in ok)
        counts["caption_source"] = _histogram(r["caption_source"] for r in ok)
        if "license" in counts:
            counts["license"] = _histogram(r.get("license") or "not given" for r in ok)
        return
    if present is not None:
        counts["written"] = present
    ids_by_reason = m.get("left_out_ids") or {}
    for reason, listed in list(ids_by_reason.items()):
        kept = [c for c in listed if c not in clip_ids]
        if isinstance(counts.get("left_out", {}).get(reason), int):
            counts["left_out"][reason] -= len(listed) - len(kept)
            if counts["left_out"][reason] <= 0:
                del counts["left_out"][reason]
        ids_by_reason[reason] = kept
    m["left_out_ids"] = {k: v for k, v in ids_by_reason.items() if v}
    if isinstance(counts.get("written"), int):
        counts["selected"] = counts["written"] + sum(counts.get("left_out", {}).values())
    norm = m.get("normalise")
    if isinstance(norm, dict):
        norm["as_written_before_removals"] = True
        if isinstance(norm.get("errors"), list):
            norm["errors"] = [e for e in norm["errors"] if e.get("clip_id") not in clip_ids]


def _tidy_hf(dest: str) -> None:
    """An ``hf`` export after a removal: Parquet files left without a row are deleted (``datasets`` cannot load a
    0-row file), and the card's ``license`` field is written again from the licences of the rows left."""
    import pyarrow.parquet as pq

    from pipeline.export import _hf_license

    licences = []
    for f in [f for f in _files(dest) if f.endswith(".parquet")]:
        t = pq.read_table(io.BytesIO(_read(f)), columns=None)
        if t.num_rows == 0:
            storage.remove(f)
            continue
        if "license" in t.column_names:
            ids = t.column("license_id").to_pylist() if "license_id" in t.column_names else [None] * t.num_rows
            licences += [
                {"license": x, "license_id": i} for x, i in zip(t.column("license").to_pylist(), ids, strict=True)
            ]
    card = storage.under(dest, "README.md")
    if storage.is_file(card):
        text = storage.read_text(card)
        head, sep, body = text.partition("configs:")
        if sep:
            lines = [ln for ln in head.split("\n") if not ln.startswith(("license:", "license_name:"))]
            field = _hf_license([(x, None) for x in licences])
            storage.write_text(card, "\n".join(lines).rstrip("\n") + "\n" + field + sep + body)


def _files(dest: str) -> list[str]:
    """Every file under ``dest`` (a directory, or an object-storage prefix), as paths or URIs."""
    if storage.is_uri(dest):
        fs, p = storage.filesystem(dest)
        return sorted(storage.full_uri(fs, q, dest) for q in fs.find(p))
    return sorted(str(p) for p in Path(dest).rglob("*") if p.is_file())


def _replace(path: str, data: bytes) -> None:
    storage.write_bytes(path, data)


def _read(path: str) -> bytes:
    with storage.open_read(path) as f:
        return f.read()


def _scrub_tar(path: str, ids: set[str]) -> set[str]:
    """A webdataset shard without the samples whose key is in ``ids`` (a sample's key: its member names up to the
    first dot)."""
    data = _read(path)
    removed, kept = set(), io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=kept, mode="w") as dst:
        for member in src.getmembers():
            key = member.name.rsplit("/", 1)[-1].split(".", 1)[0]
            if key in ids:
                removed.add(key)
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    if removed:
        _replace(path, kept.getvalue())
    return removed


def _scrub_parquet(path: str, ids: set[str]) -> set[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(_read(path)))
    key = next((k for k in ("clip_id", "video_id") if k in table.column_names), None)
    if key is None:
        return set()
    gone = pc.is_in(table[key], value_set=pa.array(sorted(ids), pa.string()))
    removed = set(table.filter(gone)[key].to_pylist())
    if removed:
        buf = io.BytesIO()
        pq.write_table(table.filter(pc.invert(gone)), buf)
        _replace(path, buf.getvalue())
    return removed


def _scrub_csv(path: str, ids: set[str], delimiter: str) -> set[str]:
    text = _read(path).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows:
        return set()
    removed, kept = set(), [rows[0]]
    for row in rows[1:]:
        hits = {i for i in ids if any(i in cell for cell in row)}
        if hits:
            removed |= hits
        else:
            kept.append(row)
    if removed:
        buf = io.StringIO(newline="")
        csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(kept)
        _replace(path, buf.getvalue().encode("utf-8"))
    return removed


def _scrub_lines(path: str, ids: set[str]) -> set[str]:
    lines = _read(path).decode("utf-8").splitlines(keepends=True)
    removed, kept = set(), []
    for line in lines:
        hits = {i for i in ids if i in line}
        removed |= hits
        if not hits:
            kept.append(line)
    if removed:
        _replace(path, "".join(kept).encode("utf-8"))
    return removed
