"""``clipforge view OUT``: a local web app to browse a dataset's clips.

A grid of clips (poster frame; the mp4 plays on hover or click) with caption, key scores and drop reason; a filter
box taking a SQL WHERE clause over the ``clips`` view; sort by any column; pagination in SQL (LIMIT/OFFSET, so a
page of a 100k-clip dataset costs one top-N query); a detail page with every column of a clip and of its source
video. Poster frames are decoded on demand and cached under ``OUT/posters/``.

Safety, because the filter box takes SQL:

- The views' rows are copied once into a private DuckDB database file, which is then opened **read-only** with
  ``enable_external_access = false`` (no file, network or extension access: ``read_csv``, ``COPY``, ``ATTACH``,
  ``INSTALL`` all fail) and ``lock_configuration = true`` (a query cannot switch that back).
- The user's text is parsed by DuckDB's own parser (``json_serialize_sql``) as ``SELECT (<text>)`` and accepted
  only if it is exactly one expression: no second statement, no FROM, no subquery. The only statements ever run
  are the viewer's own SELECTs with that expression as their WHERE.
- The file route serves regular files inside OUT only: the requested path is resolved (symlinks followed, ``..``
  collapsed, after percent-decoding) and must still be under OUT.

HTTP is werkzeug's (routing, and ``send_file`` with Range support, which Chromium's <video> needs to seek).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pipeline.report import clip_poster_source, esc, poster_jpeg, score_columns

PAGE_SIZE = 48
MAX_PAGE_SIZE = 500
MAX_WHERE_CHARS = 4000
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Columns of these types are not copied into the viewer's database: embeddings are big and unreadable in a page.
_HEAVY_TYPE = re.compile(r"^(FLOAT|DOUBLE|REAL|HALF)(\[\d*\])+$|^BLOB$")
_UNSORTABLE_TYPE = re.compile(r"\[|STRUCT|MAP|UNION")


class FilterError(ValueError):
    """A WHERE clause the viewer refuses to run, with a message for the user."""


# --------------------------------------------------------------------------------------------------- database


def build_database(out: str | Path, db_path: str | Path) -> dict[str, list[str]]:
    """Copy the ``videos``, ``shots`` and ``clips`` views of OUT into a DuckDB file; return the omitted columns."""
    from pipeline import store

    mem = store.open(out)
    omitted: dict[str, list[str]] = {}
    try:
        mem.execute("ATTACH ? AS v", [str(db_path)])
        for name in ("videos", "shots", "clips"):
            types = mem.execute(f"DESCRIBE {name}").fetchall()
            heavy = [c for c, t, *_ in types if _HEAVY_TYPE.match(t)]
            omitted[name] = [f"{c} ({t})" for c, t, *_ in types if c in heavy]
            exclude = f" EXCLUDE ({', '.join(_ident(c) for c in heavy)})" if heavy else ""
            mem.execute(f"CREATE TABLE v.{name} AS SELECT *{exclude} FROM {name}")
        mem.execute("DETACH v")
    finally:
        mem.close()
    return omitted


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def check_where(con, where: str) -> str:
    """Validate a user's WHERE clause with DuckDB's parser; return it, or raise FilterError saying why.

    Accepted: exactly one SQL expression (columns of ``clips``, operators, scalar functions). Refused: several
    statements, anything that is not an expression (``; DROP ...``, ``COPY ...``), FROM / subqueries, parameters.
    """
    where = where.strip()
    if not where:
        return ""
    if len(where) > MAX_WHERE_CHARS:
        raise FilterError(f"the filter is longer than {MAX_WHERE_CHARS} characters")
    if "\x00" in where:
        raise FilterError("the filter contains a NUL character")
    # The same parentheses and line breaks as in the query that will run, so the parse is the one that executes.
    probe = f"SELECT (\n{where}\n) AS w"
    parsed = json.loads(con.execute("SELECT json_serialize_sql(?)", [probe]).fetchone()[0])
    refuse = "the filter must be a single SQL expression over the clips columns (a WHERE clause), "
    if parsed.get("error"):
        raise FilterError(refuse + f"not a statement or a fragment: {parsed.get('error_message', 'parse error')}")
    statements = parsed.get("statements") or []
    if len(statements) != 1:
        raise FilterError(refuse + f"got {len(statements)} statements")
    node = statements[0].get("node") or {}
    if (
        node.get("type") != "SELECT_NODE"
        or len(node.get("select_list") or []) != 1
        or (node.get("from_table") or {}).get("type") != "EMPTY"
        or any(node.get(k) for k in ("where_clause", "group_expressions", "having", "qualify", "sample", "modifiers"))
        or (node.get("cte_map") or {}).get("map")
    ):
        raise FilterError(refuse + "not several expressions, FROM, GROUP BY, ORDER BY or LIMIT")
    for sub in _walk(node["select_list"]):
        cls = sub.get("class")
        if cls == "SUBQUERY":
            raise FilterError(refuse + "without subqueries")
        if cls == "PARAMETER":
            raise FilterError(refuse + "without parameters")
    return where


# -------------------------------------------------------------------------------------------------------- app


class Viewer:
    """The WSGI app. One read-only DuckDB database per viewer; a cursor per request (threads share nothing)."""

    def __init__(self, out: str | Path, page_size: int = PAGE_SIZE):
        import duckdb
        from werkzeug.routing import Map, Rule

        from stages import storage

        self.out = storage.location(out)  # a local directory or a bucket prefix
        self.page_size = page_size
        self._tmp = tempfile.mkdtemp(prefix="clipforge-view-")
        # where files of an OUT in a bucket are fetched to (and posters cached) before they are served
        self.cache = self.out if not storage.is_uri(self.out) else Path(self._tmp) / "out"
        db_path = Path(self._tmp) / "view.duckdb"
        self.con = None
        try:  # a bad OUT (no clips table, an unreadable bucket) raises here: its temporary directory goes too
            self.omitted = build_database(self.out, db_path)
            self.con = duckdb.connect(
                str(db_path),
                read_only=True,
                config={
                    "enable_external_access": False,
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                    "lock_configuration": True,
                },
            )
            self.types = {r[0]: r[1] for r in self.con.execute("DESCRIBE clips").fetchall()}
        except BaseException:
            self.close()
            raise
        self.scores = score_columns(self.types)
        self.sortable = [c for c, t in self.types.items() if not _UNSORTABLE_TYPE.search(t)]
        self.caption_col = next(
            (c for c in ("caption_short", "caption_dense", "caption", "original_caption") if c in self.types), None
        )
        self._poster_lock = threading.Lock()
        self.url_map = Map(
            [
                Rule("/", endpoint="grid"),
                Rule("/api/clips", endpoint="api_clips"),
                Rule("/clip/<clip_id>", endpoint="detail"),
                Rule("/poster/<clip_id>.jpg", endpoint="poster"),
                Rule("/files/<path:rel>", endpoint="files"),
            ],
            merge_slashes=False,  # "/files//etc/passwd" is a 404, not a redirect to a rewritten path
        )

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- WSGI

    def __call__(self, environ, start_response):
        from werkzeug.exceptions import HTTPException
        from werkzeug.wrappers import Request

        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, values = adapter.match()
            response = getattr(self, f"on_{endpoint}")(request, **values)
        except HTTPException as e:
            response = e
        return response(environ, start_response)

    # ------------------------------------------------------------------------------------------- queries

    def query_page(
        self, where: str = "", sort: str = "", direction: str = "desc", page: int = 1, size: int | None = None
    ) -> dict[str, Any]:
        """One page of clips matching a user WHERE clause. Raises FilterError for a refused or failing filter."""
        size = max(1, min(int(size or self.page_size), MAX_PAGE_SIZE))
        page = max(1, int(page))
        if sort and sort not in self.sortable:
            raise FilterError(f"cannot sort by {sort!r}: not a column of clips (or a list/struct column)")
        direction = "asc" if str(direction).lower() == "asc" else "desc"
        cur = self.con.cursor()
        try:
            clause = check_where(cur, where)
            cond = f"(\n{clause}\n)" if clause else "TRUE"
            order = f"{_ident(sort)} {direction.upper()} NULLS LAST, clip_id" if sort else "video_id, start_s, clip_id"
            try:
                total = cur.execute(f"SELECT count(*) FROM clips WHERE {cond}").fetchone()[0]
                res = cur.execute(
                    f"SELECT * FROM clips WHERE {cond} ORDER BY {order} LIMIT {size} OFFSET {(page - 1) * size}"
                )
                names = [d[0] for d in res.description]
                rows = [dict(zip(names, r, strict=True)) for r in res.fetchall()]
            except Exception as e:  # binder/type errors in the user's expression: their message is the answer
                msg = str(e).split("\n")[0]
                raise FilterError(f"the filter failed: {msg}") from None
        finally:
            cur.close()
        return {
            "where": clause,
            "sort": sort,
            "dir": direction,
            "page": page,
            "size": size,
            "total": total,
            "pages": max(1, -(-total // size)),
            "rows": rows,
        }

    def clip(self, clip_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        cur = self.con.cursor()
        try:
            res = cur.execute("SELECT * FROM clips WHERE clip_id = ? LIMIT 1", [clip_id])
            names = [d[0] for d in res.description]
            row = res.fetchone()
            if row is None:
                return None, None
            clip = dict(zip(names, row, strict=True))
            res = cur.execute("SELECT * FROM videos WHERE video_id = ? LIMIT 1", [clip["video_id"]])
            names = [d[0] for d in res.description]
            vrow = res.fetchone()
            return clip, dict(zip(names, vrow, strict=True)) if vrow else None
        finally:
            cur.close()

    # ------------------------------------------------------------------------------------------- routes

    def _params(self, request) -> dict[str, Any]:
        a = request.args
        try:
            page = int(a.get("page", 1))
        except ValueError:
            page = 1
        return {
            "where": a.get("where", ""),
            "sort": a.get("sort", ""),
            "direction": a.get("dir", "desc"),
            "page": page,
        }

    def on_api_clips(self, request):
        from werkzeug.wrappers import Response

        try:
            result = self.query_page(**self._params(request), size=request.args.get("size", type=int))
        except FilterError as e:
            return Response(json.dumps({"error": str(e)}), status=400, mimetype="application/json")
        return Response(json.dumps(result, default=str), mimetype="application/json")

    def on_grid(self, request):
        from werkzeug.wrappers import Response

        params = self._params(request)
        error = None
        try:
            result = self.query_page(**params)
        except FilterError as e:
            error = str(e)
            result = {"rows": [], "total": 0, "pages": 1, "page": 1, "size": self.page_size, **params}
        body = self._grid_html(params, result, error)
        return Response(_page("clipforge view", body), status=400 if error else 200, mimetype="text/html")

    def on_detail(self, request, clip_id: str):
        from werkzeug.exceptions import NotFound
        from werkzeug.wrappers import Response

        clip, video = self.clip(clip_id)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r}")
        return Response(_page(f"clip {clip_id}", self._detail_html(clip, video)), mimetype="text/html")

    def on_poster(self, request, clip_id: str):
        from werkzeug.exceptions import NotFound
        from werkzeug.wrappers import Response

        cached = self.cache / "posters" / clip_id[:2] / f"{clip_id}.jpg" if _SAFE_ID.match(clip_id) else None
        if cached is not None and cached.is_file():
            return self._send(request, cached)
        clip, video = self.clip(clip_id)
        if clip is None:
            raise NotFound(f"no clip {clip_id!r}")
        try:
            src, t = clip_poster_source(self.out, {**clip, "video_path": (video or {}).get("path")})
            data = poster_jpeg(src, t)
        except Exception as e:
            return Response(f"no poster frame: {type(e).__name__}: {e}", status=404, mimetype="text/plain")
        if cached is not None:
            self._cache(cached, data)
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def _cache(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a unique temporary name, then rename: concurrent requests never serve a half-written JPEG
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only OUT: posters are still served, just not cached

    def on_files(self, request, rel: str):
        from werkzeug.exceptions import Forbidden, NotFound

        from stages import storage

        target = (self.cache / rel).resolve()  # follows symlinks and collapses ".." (already percent-decoded)
        if not target.is_relative_to(self.cache):
            raise Forbidden("refused: the file is outside the dataset directory")
        if self.cache is not self.out and not target.is_file():  # a bucket: fetch the object once, then serve it
            source = storage.under(self.out, target.relative_to(self.cache).as_posix())
            if storage.is_file(source):
                with storage.open_read(source) as f:
                    self._cache(target, f.read())
        if not target.is_file():
            raise NotFound("no such file in the dataset")
        return self._send(request, target)

    def _send(self, request, path: Path):
        from werkzeug.utils import send_file

        # conditional=True: ETag/If-Modified-Since and HTTP Range (206) for <video> seeking
        return send_file(path, request.environ, conditional=True, max_age=3600)

    # ------------------------------------------------------------------------------------------- HTML

    def _url(self, **params: Any) -> str:
        q = {k: v for k, v in params.items() if v not in ("", None)}
        return "/?" + urlencode(q) if q else "/"

    def _card(self, row: dict[str, Any], sort: str) -> str:
        cid = str(row["clip_id"])
        poster = f"/poster/{quote(cid)}.jpg"
        if row.get("clip_path"):
            media = (
                f'<video class="clip" muted loop playsinline preload="none" poster="{esc(poster)}" '
                f'src="/files/{esc(quote(str(row["clip_path"])))}"></video>'
            )
        else:
            media = f'<img class="clip" loading="lazy" src="{esc(poster)}" alt="source frame (clip not cut)">'
        keys = ([sort] if sort in self.types else []) + [c for c in self.scores if c != sort][:4]
        scores = " ".join(
            f'<span class="score"><b>{esc(c)}</b> {esc(_fmt(row.get(c)))}</span>' for c in dict.fromkeys(keys)
        )
        reason = row.get("drop_reason")
        badge = f'<span class="drop">{esc(reason)}</span>' if reason else '<span class="kept">kept</span>'
        caption = row.get(self.caption_col) if self.caption_col else None
        return (
            f'<div class="card" data-clip-id="{esc(cid)}">{media}'
            f'<div class="meta"><a class="detail" href="/clip/{esc(quote(cid))}">{esc(cid)}</a> '
            f"{esc(_fmt(row.get('duration_s')))}s {badge}</div>"
            f'<div class="scores">{scores}</div><div class="cap">{esc(caption)}</div></div>'
        )

    def _grid_html(self, params: dict[str, Any], result: dict[str, Any], error: str | None) -> str:
        where, sort, direction, page = params["where"], params["sort"], params["direction"], result["page"]
        options = ['<option value="">source order</option>'] + [
            f'<option value="{esc(c)}"{" selected" if c == sort else ""}>{esc(c)}</option>'
            for c in dict.fromkeys([*self.scores, *self.sortable])
        ]
        dirs = "".join(
            f'<option value="{d}"{" selected" if d == direction else ""}>{d}</option>' for d in ("desc", "asc")
        )
        form = (
            '<form id="filter" method="get" action="/">'
            f'<input id="where" name="where" size="70" value="{esc(where)}" '
            'placeholder="SQL WHERE clause, e.g. drop_reason IS NULL AND duration_s > 2"> '
            f'sort <select id="sort" name="sort">{"".join(options)}</select> '
            f'<select id="dir" name="dir">{dirs}</select> <button type="submit">apply</button></form>'
        )
        err = f'<div id="error" class="error">{esc(error)}</div>' if error else ""
        nav = []
        if page > 1:
            nav.append(
                f'<a id="prev" href="{esc(self._url(where=where, sort=sort, dir=direction, page=page - 1))}">'
                "&larr; prev</a>"
            )
        nav.append(f'<span id="pageinfo">page {page} of {result["pages"]} · {result["total"]:,} clips</span>')
        if page < result["pages"]:
            nav.append(
                f'<a id="next" href="{esc(self._url(where=where, sort=sort, dir=direction, page=page + 1))}">'
                "next &rarr;</a>"
            )
        cards = "".join(self._card(r, sort) for r in result["rows"])
        cols = ", ".join(self.types)
        return (
            f'<h1>clipforge view</h1><p class="sub"><code>{esc(self.out)}</code></p>{form}{err}'
            f'<p class="nav">{" ".join(nav)}</p><div id="grid" class="grid">{cards}</div>'
            f'<p class="sub">columns of <code>clips</code>: {esc(cols)}</p>{_GRID_JS}'
        )

    def _detail_html(self, clip: dict[str, Any], video: dict[str, Any] | None) -> str:
        cid = str(clip["clip_id"])
        poster = f"/poster/{quote(cid)}.jpg"
        if clip.get("clip_path"):
            media = (
                f'<video id="player" controls muted playsinline preload="metadata" poster="{esc(poster)}" '
                f'src="/files/{esc(quote(str(clip["clip_path"])))}"></video>'
            )
        else:
            media = f'<img id="player" src="{esc(poster)}" alt="frame from the source video (clip not cut)">'
        caps = [
            f'<div class="caption"><b>{esc(c)}</b><p id="{esc(c)}">{esc(clip.get(c))}</p></div>'
            for c in self.types
            if "caption" in c and isinstance(clip.get(c), str)
        ]
        omitted = ", ".join(self.omitted.get("clips", []))
        parts = [
            '<p><a href="/">&larr; all clips</a></p>',
            f"<h1>clip <code>{esc(cid)}</code></h1>",
            media,
            "".join(caps),
            "<h2>clip columns</h2>",
            _kv_table(clip, "clip-columns"),
            f'<p class="sub">not loaded: {esc(omitted)}</p>' if omitted else "",
            "<h2>source video</h2>",
            _kv_table(video, "video-columns") if video else "<p>no videos row for this clip</p>",
        ]
        return "".join(parts)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e5 else f"{v:.4g}"
    return str(v)


def _kv_table(row: dict[str, Any], table_id: str) -> str:
    cells = []
    for k, v in row.items():
        if isinstance(v, (list, dict)):
            v = json.dumps(v, default=str)
        cells.append(f'<tr><th>{esc(k)}</th><td data-col="{esc(k)}">{esc(v)}</td></tr>')
    return f'<table id="{table_id}">{"".join(cells)}</table>'


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:1em 2em;color:#222}
h1{margin:.2em 0}.sub{color:#666}form{margin:.6em 0}input#where{font-family:monospace}
.error{background:#fde8e8;border:1px solid #e0a0a0;color:#900;padding:.6em;margin:.6em 0;font-family:monospace}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px;font-size:12px;background:#fafafa}
.clip{width:100%;height:150px;object-fit:contain;background:#111;display:block;cursor:pointer}
.meta{margin-top:4px}.scores{color:#444}.score{margin-right:6px;white-space:nowrap}
.cap{color:#333;max-height:4.2em;overflow:hidden;margin-top:3px}
.drop{background:#c0504d;color:#fff;border-radius:3px;padding:0 4px}
.kept{background:#2a9d8f;color:#fff;border-radius:3px;padding:0 4px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td{font-family:monospace;word-break:break-all;max-width:900px}
#player{max-width:720px;max-height:420px;background:#111;display:block}.nav a{margin:0 .6em}
"""

# Hover plays (muted, so no user gesture is needed), leaving pauses, click toggles.
_GRID_JS = """<script>
for (const v of document.querySelectorAll('video.clip')) {
  v.addEventListener('mouseenter', () => { v.play().catch(() => {}); });
  v.addEventListener('mouseleave', () => { v.pause(); });
  v.addEventListener('click', () => { v.paused ? v.play().catch(() => {}) : v.pause(); });
}
</script>"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def make_app(out: str | Path, page_size: int = PAGE_SIZE) -> Viewer:
    """The viewer's WSGI app for dataset ``out`` (call ``.close()`` when done)."""
    return Viewer(out, page_size=page_size)


# ------------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="dataset directory OUT")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")


def main(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    app = make_app(args.out)
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except BaseException:  # the port is taken, the host is not this machine's: the temporary database goes
        app.close()
        raise
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: anyone who can reach it can browse the dataset")
    print(f"clipforge view: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    import signal

    def stop(signum, frame):  # a SIGTERM (kill, a service manager) ends it as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # so the temporary database and the files fetched from a bucket go too
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
    return 0
