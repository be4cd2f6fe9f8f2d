"""expand_inputs on real directory trees, globs and list files (txt, csv, tsv, parquet, jsonl, Panda-70M csv)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.ingest import (
    LINEAGE_COLUMNS,
    IngestConfig,
    expand_inputs,
    license_id,
    lineage_of,
    parse_time,
    sidecar_caption,
)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small tree: videos at two depths, upper-case extension, non-video files, a hidden file."""
    root = tmp_path / "data"
    touch(root / "b.mp4")
    touch(root / "a.MKV")
    touch(root / "notes.md")
    touch(root / "sub" / "c.webm")
    touch(root / "sub" / "deeper" / "d.mov")
    touch(root / "sub" / "thumb.jpg")
    touch(root / ".hidden.mp4")
    return root


def paths(rows: list[dict]) -> list[str]:
    return [r["path"] for r in rows]


def test_directory_is_recursive_sorted_case_insensitive(tree: Path):
    rows = expand_inputs([str(tree)])
    assert paths(rows) == [
        str(tree / "a.MKV"),
        str(tree / "b.mp4"),
        str(tree / "sub" / "c.webm"),
        str(tree / "sub" / "deeper" / "d.mov"),
    ]
    assert all(r["input_error"] is None and r["spans"] is None and r["original_caption"] is None for r in rows)
    assert all(os.path.isabs(p) for p in paths(rows))


def test_relative_input_becomes_absolute(tree: Path, monkeypatch):
    monkeypatch.chdir(tree.parent)
    rows = expand_inputs(["data/b.mp4"])
    assert paths(rows) == [str(tree / "b.mp4")]


def test_custom_extensions(tree: Path):
    rows = expand_inputs([str(tree)], IngestConfig(extensions=(".webm",)))
    assert paths(rows) == [str(tree / "sub" / "c.webm")]


def test_glob_recursive_and_flat(tree: Path):
    assert paths(expand_inputs([str(tree / "**" / "*.webm")])) == [str(tree / "sub" / "c.webm")]
    flat = paths(expand_inputs([str(tree / "*")]))  # only video files at the top level, and the sub dir walked
    assert flat == [
        str(tree / "a.MKV"),
        str(tree / "b.mp4"),
        str(tree / "sub" / "c.webm"),
        str(tree / "sub" / "deeper" / "d.mov"),
    ]
    # a glob that names an extension takes it even if it is not a video extension
    touch(tree / "raw.bin")
    assert paths(expand_inputs([str(tree / "*.bin")])) == [str(tree / "raw.bin")]


def test_explicit_file_taken_whatever_its_extension(tmp_path: Path):
    odd = touch(tmp_path / "movie.weird")
    rows = expand_inputs([str(odd)])
    assert rows == [{"path": str(odd), "original_caption": None, "spans": None, "input_error": None,
                     **dict.fromkeys(LINEAGE_COLUMNS)}]  # fmt: skip


def test_missing_inputs_are_error_rows(tmp_path: Path):
    missing = tmp_path / "nope.mp4"
    rows = expand_inputs([str(missing), str(tmp_path / "*.mp4"), "nosuchfs://bucket/v.mp4", str(tmp_path)])
    want = [str(missing), str(tmp_path / "*.mp4"), "nosuchfs://bucket/v.mp4", str(tmp_path)]
    assert [r["path"] for r in rows] == want
    errs = [r["input_error"] for r in rows]
    assert errs[0].startswith("FileNotFoundError: ") and str(missing) in errs[0]
    assert errs[1].startswith("FileNotFoundError: glob matched no video file")
    assert errs[2].startswith("UnsupportedURI: no filesystem for nosuchfs://bucket/v.mp4")
    assert errs[3].startswith("NoVideoFiles: ")  # an existing dir without videos is not silently empty


def test_same_file_reached_twice_appears_once(tree: Path):
    link = tree.parent / "link.mp4"
    link.symlink_to(tree / "b.mp4")
    rows = expand_inputs([str(tree / "b.mp4"), str(tree), str(tree / "*.mp4"), str(link)])
    assert paths(rows).count(str(tree / "b.mp4")) == 1
    assert str(link) not in paths(rows)  # the symlink resolves to the same file
    assert len(rows) == 4


def test_follow_symlinks_false_skips_links_in_walks(tmp_path: Path):
    real = touch(tmp_path / "store" / "v.mp4")
    walk = tmp_path / "walk"
    walk.mkdir()
    (walk / "linked.mp4").symlink_to(real)
    (walk / "linkdir").symlink_to(tmp_path / "store", target_is_directory=True)
    touch(walk / "own.mp4")
    assert paths(expand_inputs([str(walk)], IngestConfig(follow_symlinks=False))) == [str(walk / "own.mp4")]
    followed = paths(expand_inputs([str(walk)]))
    assert str(walk / "own.mp4") in followed and len(followed) == 2  # link and linkdir/v.mp4 are one file


def test_symlink_loop_terminates(tmp_path: Path):
    touch(tmp_path / "d" / "v.mp4")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    assert paths(expand_inputs([str(tmp_path / "d")])) == [str(tmp_path / "d" / "v.mp4")]


def test_txt_list_relative_comments_and_missing(tmp_path: Path):
    a = touch(tmp_path / "videos" / "a.mp4")
    b = touch(tmp_path / "elsewhere" / "b b.mp4")
    lst = tmp_path / "videos" / "list.txt"
    lst.write_text(f"# my videos\n\na.mp4\n  {b}  \nmissing.mp4\n")
    rows = expand_inputs([str(lst)])
    assert paths(rows) == [str(a), str(b), str(tmp_path / "videos" / "missing.mp4")]
    assert rows[0]["input_error"] is None and rows[1]["input_error"] is None
    assert rows[2]["input_error"].startswith("FileNotFoundError: list.txt:5:")


def test_csv_spans_and_captions(tmp_path: Path):
    a = touch(tmp_path / "a.mp4")
    b = touch(tmp_path / "b.mp4")
    lst = tmp_path / "list.csv"
    with open(lst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Video", "start", "end", "text"])  # alternative names, any case
        w.writerow(["a.mp4", "1.5", "00:00:04.250", "a dog runs"])
        w.writerow(["a.mp4", "0:05", "0:07.5", "the dog sits"])
        w.writerow(["b.mp4", "", "", "a whole-video caption"])
    rows = expand_inputs([str(lst)])
    assert paths(rows) == [str(a), str(b)]
    assert rows[0]["spans"] == [
        {"start_s": 1.5, "end_s": 4.25, "caption": "a dog runs"},
        {"start_s": 5.0, "end_s": 7.5, "caption": "the dog sits"},
    ]
    assert rows[0]["original_caption"] is None
    assert rows[1]["spans"] is None and rows[1]["original_caption"] == "a whole-video caption"


def test_tsv_and_jsonl(tmp_path: Path):
    a = touch(tmp_path / "a.mp4")
    (tmp_path / "l.tsv").write_text("filepath\tstart_s\tend_s\tcaption\na.mp4\t0\t2\tx, with comma\n")
    rows = expand_inputs([str(tmp_path / "l.tsv")])
    assert rows[0]["path"] == str(a) and rows[0]["spans"] == [
        {"start_s": 0.0, "end_s": 2.0, "caption": "x, with comma"}
    ]
    (tmp_path / "l.jsonl").write_text(json.dumps({"file": "a.mp4", "caption": "json cap"}) + "\n")
    rows = expand_inputs([str(tmp_path / "l.jsonl")])
    assert rows[0]["original_caption"] == "json cap"


def test_parquet_list(tmp_path: Path):
    a = touch(tmp_path / "a.mp4")
    b = touch(tmp_path / "b.mp4")
    table = pa.table(
        {
            "path": [str(a), "b.mp4", "b.mp4"],
            "start_s": [None, 0.0, 3.0],
            "end_s": [None, 2.0, 4.0],
            "caption": ["whole a", "b first", None],
        }
    )
    pq.write_table(table, tmp_path / "list.parquet")
    rows = expand_inputs([str(tmp_path / "list.parquet")])
    assert paths(rows) == [str(a), str(b)]
    assert rows[0]["original_caption"] == "whole a" and rows[0]["spans"] is None
    assert rows[1]["spans"] == [
        {"start_s": 0.0, "end_s": 2.0, "caption": "b first"},
        {"start_s": 3.0, "end_s": 4.0, "caption": None},
    ]


def test_panda70m_timestamp_column(tmp_path: Path):
    v = touch(tmp_path / "vid.mp4")
    lst = tmp_path / "panda.csv"
    with open(lst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoID", "path", "timestamp", "caption", "matching_score"])
        w.writerow(
            [
                "abc",
                "vid.mp4",
                "[['0:00:00.000', '0:00:05.005'], ['0:00:05.005', '0:01:02.500']]",
                "['a man talks', 'a car drives by']",
                "[0.4, 0.5]",
            ]
        )
    (row,) = expand_inputs([str(lst)])
    assert row["path"] == str(v)
    assert row["spans"] == [
        {"start_s": 0.0, "end_s": 5.005, "caption": "a man talks"},
        {"start_s": 5.005, "end_s": 62.5, "caption": "a car drives by"},
    ]


def test_bad_list_rows_are_error_rows(tmp_path: Path):
    touch(tmp_path / "a.mp4")
    (tmp_path / "nocol.csv").write_text("name,caption\na.mp4,x\n")
    (tmp_path / "badspan.csv").write_text("path,start_s,end_s\na.mp4,5,2\n")
    (tmp_path / "halfspan.csv").write_text("path,start_s\na.mp4,5\n")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    rows = expand_inputs([str(tmp_path / n) for n in ("nocol.csv", "badspan.csv", "halfspan.csv", "broken.parquet")])
    errs = [r["input_error"] for r in rows]
    assert len(rows) == 3  # both bad span rows are about a.mp4: one row carrying both errors
    assert errs[0].startswith("ValueError: nocol.csv:2: no path column")
    assert errs[1].startswith("ValueError: badspan.csv:2: span end 2.0 s is not after its start 5.0 s; ")
    assert "halfspan.csv:2: a span needs both a start and an end" in errs[1]
    assert errs[2].startswith("ValueError: cannot read list file")
    # a good input reaching the same file does not hide the bad list row
    rows = expand_inputs([str(tmp_path / "a.mp4"), str(tmp_path / "badspan.csv")])
    assert len(rows) == 1 and rows[0]["input_error"].startswith("ValueError: badspan.csv:2")


def test_sidecar_captions_and_list_caption_wins(tmp_path: Path):
    a = touch(tmp_path / "a.mp4")
    (tmp_path / "a.mp4.txt").write_text("caption from a.mp4.txt\n")
    b = touch(tmp_path / "b.mkv")
    (tmp_path / "b.txt").write_text("caption from b.txt")
    c = touch(tmp_path / "c.webm")
    (tmp_path / "c.json").write_text(json.dumps({"title": "the title", "description": "the description"}))
    d = touch(tmp_path / "d.mp4")
    (tmp_path / "d.json").write_text("{not json")
    rows = {r["path"]: r for r in expand_inputs([str(tmp_path)])}
    assert rows[str(a)]["original_caption"] == "caption from a.mp4.txt"
    assert rows[str(b)]["original_caption"] == "caption from b.txt"
    assert rows[str(c)]["original_caption"] == "the description"  # description ranks before title
    assert rows[str(d)]["original_caption"] is None
    assert sidecar_caption(str(tmp_path / "zzz.mp4")) is None

    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "l.csv").write_text("path,caption\n../a.mp4,from the list\n")
    (row,) = expand_inputs([str(tmp_path / "lists" / "l.csv")])
    assert row["original_caption"] == "from the list"
    assert expand_inputs([str(a)], IngestConfig(sidecar_captions=False))[0]["original_caption"] is None


def test_lineage_from_list_files_and_sidecars(tmp_path: Path):
    """source_url, license, creator, consent, tags: from list columns (aliases, tags split), from a JSON sidecar or
    yt-dlp's .info.json, a list file's value winning field by field; absent ones null."""
    a, b, c = touch(tmp_path / "a.mp4"), touch(tmp_path / "b.mp4"), touch(tmp_path / "c.mp4")
    (tmp_path / "l.csv").write_text(
        "path,licence,url,author,consent,tags\n"
        'a.mp4,CC-BY-4.0,https://x.org/a,Ann,true,"city; night ;"\n'
        "b.mp4,CC0-1.0,,,,\n"
    )
    (tmp_path / "b.info.json").write_text(json.dumps({
        "webpage_url": "https://www.youtube.com/watch?v=b", "uploader": "Bea", "license": "Standard YouTube License",
        "tags": ["surf", "sea"], "title": "surfing at dawn",
    }))  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps({"Creator": "Cy", "consent": False, "tags": '["x", "y"]'}))
    rows = {r["path"]: r for r in expand_inputs([str(tmp_path / "l.csv"), str(c)])}
    ra, rb, rc = rows[str(a)], rows[str(b)], rows[str(c)]
    assert {k: ra[k] for k in LINEAGE_COLUMNS} == {
        "source_url": "https://x.org/a", "license": "CC-BY-4.0", "creator": "Ann", "consent": "true",
        "tags": ["city", "night"],
    }  # fmt: skip
    # the list's licence wins; the sidecar fills what the list left empty
    assert {k: rb[k] for k in LINEAGE_COLUMNS} == {
        "source_url": "https://www.youtube.com/watch?v=b", "license": "CC0-1.0", "creator": "Bea", "consent": None,
        "tags": ["surf", "sea"],
    }  # fmt: skip
    assert rb["original_caption"] == "surfing at dawn"
    assert {k: rc[k] for k in LINEAGE_COLUMNS} == {
        "source_url": None, "license": None, "creator": "Cy", "consent": "false", "tags": ["x", "y"]
    }  # fmt: skip
    assert lineage_of({"tags": "a,b", "license": "  "}) == {"tags": ["a", "b"]}
    bare = expand_inputs([str(c)], IngestConfig(sidecar_captions=False))[0]
    assert all(bare[k] is None for k in LINEAGE_COLUMNS)
    # listed twice with different licences: the first wins, and the row says which fields disagreed
    (tmp_path / "l2.csv").write_text("path,license,creator\na.mp4,CC0-1.0,Ann\na.mp4,PROPRIETARY,Ann\n")
    (twice,) = expand_inputs([str(tmp_path / "l2.csv")])
    assert twice["license"] == "CC0-1.0" and twice["lineage_conflicts"] == ["license"]


@pytest.mark.parametrize(
    ("text", "spdx"),
    [
        ("CC BY-NC-SA 4.0", "CC-BY-NC-SA-4.0"),
        ("cc-by-4.0", "CC-BY-4.0"),
        ("Creative Commons Attribution 4.0 International", "CC-BY-4.0"),
        ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", "CC-BY-NC-ND-4.0"),
        ("https://creativecommons.org/licenses/by-sa/3.0/", "CC-BY-SA-3.0"),
        ("CC0 1.0 Universal", "CC0-1.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        ("Creative Commons Attribution license (reuse allowed)", "CC-BY-3.0"),  # yt-dlp's YouTube CC text
        ("CC BY", None),  # no version: no SPDX id
        ("Standard YouTube License", None),
        (None, None),
    ],
)
def test_license_id_is_the_spdx_id_of_a_creative_commons_licence(text, spdx):
    assert license_id(text) == spdx


def test_list_rows_merge_with_other_inputs(tmp_path: Path):
    a = touch(tmp_path / "a.mp4")
    (tmp_path / "l.csv").write_text("path,start_s,end_s,caption\na.mp4,0,1,one\n")
    rows = expand_inputs([str(tmp_path), str(tmp_path / "l.csv")])
    assert len(rows) == 1 and rows[0]["path"] == str(a)
    assert rows[0]["spans"] == [{"start_s": 0.0, "end_s": 1.0, "caption": "one"}]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12", 12.0), ("1.25", 1.25), ("01:02", 62.0), ("1:02:03.500", 3723.5), ("0:00:05.005", 5.005), (7, 7.0)],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["abc", "1:2:3:4", "-1", float("nan")])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError):
        parse_time(bad)
