"""The clip viewer on a real curated dataset, driven in real headless Chromium (selenium + chromedriver).

The dataset is a real ``pipeline.run.run`` over real footage (bikes, bigbuckbunny, carphone with their demo
captions) plus the mixed good/broken corpus. Scores and filters are the run's own; captions are
``skipped_no_model`` (no VLM weights here).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import cv2
import numpy as np
import pyarrow as pa
import pytest

from pipeline import store
from pipeline.schema import CLIPS
from pipeline.viewer import FilterError, check_where, make_app

ROOT = Path(__file__).resolve().parents[2]
# --------------------------------------------------------------------------------------------- the dataset


@pytest.fixture(scope="module")
def dataset(curated_dataset) -> Path:
    return curated_dataset


# --------------------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(start_chromium):
    driver = start_chromium()
    yield driver
    driver.quit()


class Served:
    """A viewer app behind werkzeug's real threaded HTTP server on a free localhost port."""

    def __init__(self, out: Path, page_size: int = 8):
        from werkzeug.serving import make_server

        self.app = make_app(out, page_size=page_size)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def raw_get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET with the path sent exactly as given (a browser would normalize ``..`` away)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.close()


@pytest.fixture(scope="module")
def served(dataset):
    s = Served(dataset)
    yield s
    s.close()


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _card_ids(browser) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll('#grid .card')].map(c => c.dataset.clipId)")


def _submit(browser, base: str, where: str = "", sort: str = "", direction: str = "desc") -> None:
    """Fill the filter form like a user and submit it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(base + "/")
    box = browser.find_element(By.ID, "where")
    box.clear()
    box.send_keys(where)
    Select(browser.find_element(By.ID, "sort")).select_by_value(sort)
    Select(browser.find_element(By.ID, "dir")).select_by_value(direction)
    _click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#filter button"))


def _click_and_wait(browser, element) -> None:
    """Click a link/button that navigates, and wait until the new page has replaced the old one."""
    from selenium.common.exceptions import WebDriverException

    # Mark the old page's window and wait for a window without the mark. Selenium's staleness_of asks
    # the old element, and Chrome may answer that question mid-navigation with a generic inspector
    # error ("Node with given id does not belong to the document") instead of a stale-element one.
    browser.execute_script("window.__clipforgeOldPage = true")
    element.click()

    def _new_page_loaded():
        try:
            return browser.execute_script("return !window.__clipforgeOldPage && document.readyState === 'complete'")
        except WebDriverException:  # asked while the navigation swaps documents: ask again
            return False

    _wait(_new_page_loaded, timeout=30, what="the new page")


def _sql(out: Path, sql: str, params=None):
    con = store.open(out)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ the tests


def test_grid_loads_with_every_clip_counted(browser, served, dataset):
    total = _sql(dataset, "SELECT count(*) FROM clips")[0][0]
    assert total >= 12, "the corpus must yield a real grid"
    browser.get(served.url + "/")
    info = browser.find_element("id", "pageinfo").text
    assert f"{total:,} clips" in info and f"of {-(-total // 8)}" in info
    ids = _card_ids(browser)
    first8 = [r[0] for r in _sql(dataset, "SELECT clip_id FROM clips ORDER BY video_id, start_s, clip_id LIMIT 8")]
    assert ids == first8
    # every page, followed through the "next" links, shows each clip exactly once
    seen = list(ids)
    while browser.find_elements("id", "next"):
        _click_and_wait(browser, browser.find_element("id", "next"))
        seen += _card_ids(browser)
    assert sorted(seen) == sorted(r[0] for r in _sql(dataset, "SELECT clip_id FROM clips"))


def test_filtering_and_sorting_change_the_grid(browser, served, dataset):
    _submit(browser, served.url, where="drop_reason IS NULL AND duration_s > 1", sort="duration_s", direction="asc")
    want = _sql(
        dataset,
        "SELECT clip_id FROM clips WHERE drop_reason IS NULL AND duration_s > 1 "
        "ORDER BY duration_s ASC NULLS LAST, clip_id LIMIT 8",
    )
    assert _card_ids(browser) == [r[0] for r in want]
    assert not browser.find_elements("id", "error")
    badges = browser.execute_script("return [...document.querySelectorAll('#grid .card .kept')].length")
    assert badges == len(want)

    _submit(browser, served.url, where="drop_reason IS NOT NULL", sort="sharpness", direction="desc")
    want = _sql(
        dataset,
        "SELECT clip_id FROM clips WHERE drop_reason IS NOT NULL ORDER BY sharpness DESC NULLS LAST, clip_id LIMIT 8",
    )
    assert want and _card_ids(browser) == [r[0] for r in want]
    reasons = browser.execute_script(
        "return [...document.querySelectorAll('#grid .card .drop')].map(e => e.textContent)"
    )
    assert len(reasons) == len(want) and all(reasons)

    # the same filter, the other direction: a different order
    _submit(browser, served.url, where="sharpness IS NOT NULL", sort="sharpness", direction="asc")
    asc = _card_ids(browser)
    _submit(browser, served.url, where="sharpness IS NOT NULL", sort="sharpness", direction="desc")
    assert _card_ids(browser) != asc
    scores = _sql(dataset, "SELECT sharpness FROM clips WHERE clip_id = ?", [_card_ids(browser)[0]])[0][0]
    assert scores == _sql(dataset, "SELECT max(sharpness) FROM clips")[0][0]


def test_a_clip_plays_on_hover_and_seeks(browser, served, dataset):
    from selenium.webdriver.common.action_chains import ActionChains

    _submit(browser, served.url, where="clip_path IS NOT NULL AND duration_s >= 2", sort="duration_s")
    video = browser.find_element("css selector", "#grid video.clip")
    assert browser.execute_script("return arguments[0].paused", video)
    ActionChains(browser).move_to_element(video).perform()  # hover starts playback (muted)
    _wait(lambda: browser.execute_script("return arguments[0].currentTime", video) > 0.2, what="playback")
    assert browser.execute_script("return arguments[0].readyState", video) >= 2
    assert browser.execute_script("return arguments[0].videoWidth", video) > 0, "frames decoded"
    # seeking needs HTTP Range on the file route
    browser.execute_script("arguments[0].pause(); arguments[0].currentTime = 1.5", video)
    _wait(lambda: browser.execute_script("return !arguments[0].seeking", video), what="seek")
    assert abs(browser.execute_script("return arguments[0].currentTime", video) - 1.5) < 0.1
    src = video.get_attribute("src")
    status = browser.execute_script(
        "return fetch(arguments[0], {headers: {Range: 'bytes=10-19'}}).then(r => r.status)", src
    )
    assert status == 206


def test_detail_page_shows_caption_and_source_video(browser, served, dataset):
    clip_id, caption, path = _sql(
        dataset,
        "SELECT c.clip_id, c.original_caption, v.path FROM clips c JOIN videos v USING (video_id) "
        "WHERE c.original_caption IS NOT NULL AND c.clip_path IS NOT NULL ORDER BY c.clip_id LIMIT 1",
    )[0]
    browser.get(served.url + "/")
    _submit(browser, served.url, where=f"clip_id = '{clip_id}'")
    _click_and_wait(browser, browser.find_element("css selector", "#grid .card a.detail"))
    assert browser.find_element("id", "original_caption").text == caption.strip()
    cells = browser.execute_script(
        "const o = {}; for (const t of ['clip-columns', 'video-columns']) for (const td of "
        "document.querySelectorAll('#' + t + ' td')) o[t + '.' + td.dataset.col] = td.textContent; return o"
    )
    assert cells["clip-columns.clip_id"] == clip_id
    assert cells["video-columns.path"] == path
    assert "clip-columns.sharpness" in cells and "clip-columns.caption_short" in cells
    player = browser.find_element("id", "player")
    browser.execute_script("arguments[0].play()", player)
    _wait(lambda: browser.execute_script("return arguments[0].currentTime", player) > 0.1, what="detail playback")


HOSTILE_WHERE = [
    "1=1; DROP TABLE clips",
    "true); DROP TABLE clips; SELECT (1",
    "COPY clips TO '/tmp/clipforge_pwned.csv'",
    "1=1) TO '/tmp/clipforge_pwned.csv' --",
    "read_csv('/etc/passwd') IS NOT NULL",
    "clip_id IN (SELECT column0 FROM read_csv('/etc/passwd'))",
    "1) FROM read_text('/etc/passwd') --",
    "ATTACH '/tmp/clipforge_pwned.duckdb'",
    "'</div><script>window.pwned = 1</script>' = clip_id; x",
]


@pytest.mark.parametrize("where", HOSTILE_WHERE)
def test_hostile_filters_are_refused_and_change_nothing(browser, served, dataset, where):
    total = _sql(dataset, "SELECT count(*) FROM clips")[0][0]
    _submit(browser, served.url, where=where)
    error = browser.find_element("id", "error").text
    assert error.startswith("the filter"), error
    assert _card_ids(browser) == []
    assert "root:" not in browser.page_source
    assert browser.find_element("id", "where").get_attribute("value") == where, "the text is shown back, escaped"
    assert browser.execute_script("return window.pwned") is None
    assert not Path("/tmp/clipforge_pwned.csv").exists() and not Path("/tmp/clipforge_pwned.duckdb").exists()
    # the viewer's own data is intact
    assert served.app.query_page()["total"] == total
    browser.get(served.url + "/")
    assert f"{total:,} clips" in browser.find_element("id", "pageinfo").text


def test_check_where_uses_the_parser_not_patterns(served):
    con = served.app.con.cursor()
    ok = ["drop_reason IS NULL", "duration_s BETWEEN 1 AND 3 OR clip_id LIKE 'a%'", "caption_short ILIKE '%;%'"]
    for where in ok:
        assert check_where(con, where) == where
    # text that merely looks dangerous inside a string literal is just a string
    assert served.app.query_page(where="original_caption = '; DROP TABLE clips'")["total"] == 0
    for where in ["1; SELECT 1", "1 AS a, 2", "1 FROM clips", "1 ORDER BY 1", "$1 = 1", "(SELECT 1) = 1"]:
        with pytest.raises(FilterError):
            check_where(con, where)
    with pytest.raises(FilterError, match="not found"):
        served.app.query_page(where="no_such_column > 1")
    with pytest.raises(FilterError, match="cannot sort"):
        served.app.query_page(sort="1; DROP TABLE clips")


def test_json_api_pages_and_refuses(served, dataset):
    status, body = served.raw_get("/api/clips?" + urlencode({"where": "drop_reason IS NULL", "sort": "duration_s"}))
    page = json.loads(body)
    kept = _sql(dataset, "SELECT clip_id FROM kept ORDER BY duration_s DESC NULLS LAST, clip_id LIMIT 8")
    assert status == 200 and page["total"] == _sql(dataset, "SELECT count(*) FROM kept")[0][0]
    assert [r["clip_id"] for r in page["rows"]] == [r[0] for r in kept]
    status, body = served.raw_get("/api/clips?" + urlencode({"where": "1; DROP TABLE clips"}))
    assert status == 400 and json.loads(body)["error"].startswith("the filter must be a single SQL expression")


def test_the_connection_itself_refuses_writes_and_file_access(served):
    con = served.app.con.cursor()
    for sql in [
        "DROP TABLE clips",
        "CREATE TABLE t AS SELECT 1",
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY clips TO '/tmp/clipforge_pwned.csv'",
        "SET enable_external_access = true",
        "INSTALL httpfs",
    ]:
        with pytest.raises(Exception):  # noqa: B017 - any DuckDB error will do: the point is that it cannot run
            con.execute(sql)
    assert not Path("/tmp/clipforge_pwned.csv").exists()


def test_file_route_serves_only_files_inside_out(browser, served, dataset, tmp_path):
    clip = _sql(dataset, "SELECT clip_path FROM clips WHERE clip_path IS NOT NULL LIMIT 1")[0][0]
    status, body = served.raw_get(f"/files/{clip}", {"Range": "bytes=0-99"})
    assert status == 206 and len(body) == 100
    assert body == (dataset / clip).read_bytes()[:100]

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET outside OUT\n")
    link = dataset / "clips" / "escape"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        hostile = [
            "/files/../../../../etc/passwd",
            "/files/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/files/clips/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/files/%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            "/files//etc/passwd",
            "/files/clips/escape/secret.txt",
            "/files/%2fetc%2fpasswd",
        ]
        for path in hostile:
            status, body = served.raw_get(path)
            assert status in (403, 404), (path, status)
            assert b"root:" not in body and b"TOP SECRET" not in body, path
        # and through the browser: the refusal is a readable page
        browser.get(served.url + "/files/clips/escape/secret.txt")
        assert "outside the dataset" in browser.page_source and "TOP SECRET" not in browser.page_source
    finally:
        link.unlink()


def test_posters_are_generated_once_and_cached_atomically(served, dataset):
    clip_id = _sql(dataset, "SELECT clip_id FROM clips WHERE clip_path IS NULL AND duration_s > 0 LIMIT 1")
    ids = [r[0] for r in _sql(dataset, "SELECT clip_id FROM clips WHERE clip_path IS NOT NULL LIMIT 2")]
    for cid in ids + [r[0] for r in clip_id]:
        status, body = served.raw_get(f"/poster/{cid}.jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff", cid  # a JPEG, from the clip or (not cut) its source
        cached = dataset / "posters" / cid[:2] / f"{cid}.jpg"
        assert cached.read_bytes() == body
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.std() > 1, "a real frame, not a blank"
    assert not list((dataset / "posters").rglob("*.tmp"))
    status, _ = served.raw_get("/poster/does-not-exist.jpg")
    assert status == 404


def test_pagination_stays_in_sql_on_100k_clips(tmp_path):
    n = 100_000
    rng = np.random.default_rng(0)
    motion = rng.random(n)
    given = {
        "clip_id": pa.array([f"c{i:06d}" for i in range(n)]),
        "video_id": pa.array([f"v{i % 97}" for i in range(n)]),
        "start_s": pa.array(np.arange(n, dtype=np.float64)),
        "duration_s": pa.array(np.full(n, 2.0)),
        "drop_reason": pa.array([None if m > 0.3 else "motion_static" for m in motion], pa.string()),
    }
    table = pa.table({f.name: given.get(f.name, pa.nulls(n, f.type)) for f in CLIPS})
    with store.ShardWriter(tmp_path, "clips") as w:
        w.add_table(table)
    schema = pa.schema([("clip_id", pa.string()), ("motion", pa.float64())])
    with store.ShardWriter(tmp_path, "scores", schema=schema) as w:
        w.add_table(pa.table({"clip_id": given["clip_id"], "motion": motion}))
    app = make_app(tmp_path, page_size=50)
    try:
        page = app.query_page(where="drop_reason IS NULL", sort="motion", direction="desc", page=700)
        kept = np.sort(motion[motion > 0.3])[::-1]
        assert page["total"] == len(kept)
        assert [r["motion"] for r in page["rows"]] == kept[699 * 50 : 700 * 50].tolist()
        last = app.query_page(where="drop_reason IS NULL", page=page["pages"])
        assert len(last["rows"]) == len(kept) - (page["pages"] - 1) * 50
    finally:
        app.close()


def test_viewer_screenshot(browser, served, screenshot_path):
    browser.get(served.url + "/?" + urlencode({"where": "original_caption IS NOT NULL", "sort": "sharpness"}))
    _wait(
        lambda: browser.execute_script(
            "return [...document.querySelectorAll('#grid video')].every(v => !v.poster || v.readyState >= 0) && "
            "[...document.images].every(i => i.complete)"
        ),
        what="images",
    )
    # posters are <video poster>: give Chromium a moment to paint them
    time.sleep(1.0)
    dest = screenshot_path("viewer.png")
    dest.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(dest))
    assert dest.stat().st_size > 20_000


def test_cli_serves_on_localhost_only_by_default(dataset, tmp_path):
    """...and a SIGTERM stops it as Ctrl-C does, its temporary directory removed."""
    import os
    import sys

    code = (
        "import argparse, sys; from pipeline.viewer import add_arguments, main; p = argparse.ArgumentParser(); "
        "add_arguments(p); sys.exit(main(p.parse_args(sys.argv[1:])))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(dataset), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("clipforge view: http://127.0.0.1:"), line + proc.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200 and b'id="grid"' in resp.read()
        conn.close()
        assert list(tmp_path.glob("clipforge-view-*"))  # its database, while it serves
    finally:
        proc.terminate()  # SIGTERM
        proc.wait(timeout=30)
    assert proc.returncode == 0 and not list(tmp_path.glob("clipforge-view-*"))


def test_a_viewer_that_cannot_start_leaves_no_temporary_directory(dataset, tmp_path, monkeypatch):
    """An OUT with no tables, and a port already taken: each raises, and the viewer's temporary directory (its
    database) is removed, not left behind."""
    import argparse
    import socket
    import tempfile

    from pipeline.viewer import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    empty = tmp_path / "empty-out"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not a clipforge dataset"):
        make_app(empty)
    assert not list(tmp_path.glob("clipforge-view-*"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = argparse.Namespace(out=str(dataset), host="127.0.0.1", port=taken.getsockname()[1])
        with pytest.raises(SystemExit):  # werkzeug reports the taken address and exits
            main(args)
    assert not list(tmp_path.glob("clipforge-view-*"))
