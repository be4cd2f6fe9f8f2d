"""Dataset-wide deduplication of clips by their perceptual-hash signatures (plus, optionally, CLIP embeddings).

Signature: the ``phash`` column written by stages/cpu_scores.py, one 64-bit DCT pHash per anchor frame taken at
fixed *relative* times of the clip, so a re-encoded, resized, retimed or slightly cropped copy hashes the same
moments. Two clips are

- exact duplicates when their signatures are identical (same decoded content at every anchor), and
- near duplicates when the mean per-frame Hamming distance of their signatures is <= ``max_hamming`` bits
  (measured on bikes.mp4 shots: re-encoded half-res/half-fps copies 1.5-7.5 bits, 8 %-cropped copies 6-9.5,
  different shots 29-33, i.e. ~32 for unrelated content).

Index: locality-sensitive banding in DuckDB. Each anchor hash is split into ``64 / band_bits`` bands; clips that
share (anchor position, band, band value) become candidate pairs, which are then verified with the full
signature distance. A pair within d bits on one anchor shares a band there whenever d < 64 / band_bits
(pigeonhole), and with 8 anchors per clip near copies almost always collide somewhere (recall measured in
bench/scores_bench.py). DuckDB runs the self-join out of core and in parallel; 16-bit bands keep random
collisions at ~n^2 * anchors * bands / 65536 pairs. Band values shared by more than ``max_bucket`` clips
(uninformative hashes, e.g. flat frames) are not used for candidates.

Which copies are dropped: the clips linked by duplicate pairs (a connected component of the duplicate graph) are
taken best first by ``quality_key``; each is dropped when it matches a clip already kept itself (identical signature
or a verified near pair), and kept when it matches none, greedily, as non-maximum suppression keeps boxes; it is named
the duplicate of the kept clip it matches most nearly. So ``duplicate_of`` always names a clip the dropped one
matches, and a chain A~B~C whose ends differ (two halves of a near-still shot, 13.8 bits apart, each matched by a
re-timed copy of the whole) loses only what matches a kept clip: single-link grouping (every clip of the component but
one dropped, until 2026-12-04) dropped both halves for the re-timed copy, or one half for the other.

Looks: a clip and a night or high-key grade of it keep the same pHash signs, but they are two looks of one footage,
not copies (``DedupConfig.max_luma_shift``: mean luma more than 0.08 apart); a grained, defocused or recompressed copy
keeps the look and stays a copy.

Mirrored and boxed copies: the scorer hashes the *active picture* (letterbox / pillarbox bars cut off,
``stages.cpu_scores.active_box``), so the same footage boxed into another frame hashes like its source; and it also
stores ``phash_mirror``, the hash of the horizontally mirrored picture. Candidates come from the bands of both, and a
pair is a near duplicate when either orientation is within ``max_hamming`` (rows without ``phash_mirror``, scored
before schema 4, are compared unmirrored only).

Offset copies: the same footage cut at another start (another upload trimmed differently, overlapping windows of
one shot) has its anchors at other moments; in a fast scene a window 5 frames later is already 19-20 bits away
anchor by anchor (bikes.mp4's taxi shot, 40-frame windows). Signatures are therefore also compared shifted by up to
``max_shift`` anchors (3: offsets up to 3/8 of the clip), over the ``MIN_OVERLAP`` (5) or more anchors that still
overlap, and the smallest of these distances counts, against ``max_shift_hamming`` (6 bits: stricter, see there):
those windows, 5 and 10 frames later, read 0.3 bits. Candidate
keys are matched at the shifted anchor positions too (an equi-join: 100k synthetic signatures in 16.1 s against
4.1 s unshifted in the same session, 3.9x, the same recall, no false pair; bench/scores_bench.py's ``bench_dedup``
with ``--dedup-max-shift`` 3 and 0).

Known limits: an offset that falls between two anchor shifts leaves up to half an anchor spacing (1/16 of the clip)
unaligned, which a slow scene tolerates and fast action does not (the taxi shot 2 frames later: 16.8 bits); a clip
that is a sub-span of another (another length, so other anchor spacing) or shifted by more than 3/8 of its length
hashes other moments and is not found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stages.settings import Settings

DUPLICATE = "duplicate"
DISABLED_NOTE = "dedup disabled (dedup.enabled = false): every copy is kept"  # what the run and refilter say
MIN_OVERLAP = 5  # anchors two shifted signatures must still share (of 8): the mean over fewer is too noisy


@dataclass
class DedupConfig(Settings):
    """Dedup settings.

    max_hamming: mean per-anchor Hamming distance (bits of 64) at or below which two signatures are near
        duplicates. 12 sits between the worst measured copy (9.5, an 8 % crop) and unrelated clips (~29-33).
    band_bits: bits per LSH band (64 / band_bits bands per anchor). 16 balances recall and candidate volume up to
        ~1M clips; use 32 for much larger sets (fewer random collisions, lower recall at large distances).
    max_bucket: band values shared by more clips than this are skipped as candidate keys (they carry no
        information and would make the self-join quadratic). Exact duplicates are grouped separately and are
        never affected.
    min_cosine: when set and both clips have a ``clip_embedding``, a near-duplicate pair must also have cosine
        similarity >= min_cosine (CLIP confirms the hash match; pairs lacking embeddings use the hash alone).
    threads: DuckDB threads (None: DuckDB's default, all cores).
    max_shift: anchors by which two signatures may be shifted against each other (0: compared anchor by anchor
        only). A copy cut from the same footage at another start (an offset copy) has its anchors at other moments;
        shifted by k anchors (k x 1/8 of the clip), those of a copy offset by about k anchor spacings line up again,
        and the distance is the mean over the anchors that overlap (at least ``MIN_OVERLAP``). See the module's
        docstring for what it finds.
    max_shift_hamming: the distance at or below which a shifted comparison makes a near duplicate: stricter than
        ``max_hamming``, because the best of several alignments reads low by chance, and because a near-still scene
        looks the same a second later (bigbuckbunny.mp4's two halves, adjacent windows of one shot: 13.8 bits
        unshifted, 8.4 shifted by 3 anchors); offset copies read 0.3-4.8 (bikes.mp4 and carphone windows 5-15
        frames later).
    max_luma_shift: two clips whose mean luma (``scores.luma_mean``, 0-1, on the active picture) differs by more than
        this are two looks of one footage, not copies, and both are kept: a night or high-key grade of a shot keeps
        its pHash (a global tone curve keeps the DCT's signs), so it matched its shot and one of the two was dropped.
        Measured over the hard set's seven sources (bench/filters_bench.py): mirrored, boxed, blurred, logo and
        subtitle copies shift the mean by 0.008 or less, night grades by 0.20-0.26, high-key ones by 0.24-0.31 (a
        newcomer's: 0.17-0.29); a copy decoded in the wrong colour range shifts a mid-grey picture's by ~0.04. 0.08
        sits 10x above the copies, 2x under the lightest grade. A grained, defocused or recompressed copy keeps the
        look and stays a copy (the cleaner one is kept). None: any look.
    enabled: False keeps every copy (no ``duplicate`` drop reason; the run and refilter say so): for a corpus
        deduplicated upstream, or to count what dedup would remove (``clipforge diff`` between a refilter with it
        off and one with it on). Signatures are still computed, so turning it back on needs only a refilter.
    """

    enabled: bool = True  # False: every copy kept (the run and refilter say so)
    max_hamming: float = 12.0  # mean bits per anchor at or below which two signatures are near copies
    max_shift: int = 3  # anchors two signatures may be shifted by (offset copies); 0: anchor by anchor only
    max_shift_hamming: float = 6.0  # the stricter threshold of a shifted match
    band_bits: int = 16  # LSH band width: 16 up to ~1M clips, 32 beyond
    max_bucket: int = 2000  # band values shared by more clips are no candidate keys
    min_cosine: float | None = None  # set: a hash match must also have this CLIP cosine similarity
    max_luma_shift: float | None = 0.08  # mean luma further apart: two looks of one footage, both kept
    threads: int | None = None  # DuckDB threads (None: all cores)


def quality_key(row: dict[str, Any]) -> tuple:
    """Sort key of a clip inside a duplicate group; the smallest key is kept.

    Rule: more pixels of active picture (width x height inside the letterbox / pillarbox bars the scorer found:
    a boxed copy has more pixels than its source but not more picture; compared in 1 % steps, as the bars are
    measured to about a pixel), then less frame area in bars, then longer duration, then less of the frame under
    graphics laid over it (``overlay_area`` + ``subtitle_area``, null as 0, in 0.1 % steps: where the text rules are
    off, a copy with a channel logo or burned-in subtitles and its clean twin both reach dedup, and the logo's edges
    made the Laplacian sharpness keep the logo copy), then higher aesthetic, then
    more detail above the noise (:func:`clean_detail`), then higher sharpness (rows scored before schema 10), then
    the source file whose path sorts first and the clip that starts first in it (the usual keep-the-first rule), then
    the lowest clip_id (a total order, so the result does not depend on row order). Null values rank last.
    :func:`find_duplicates` gives a clip and its mirror image one detail (see there).
    """

    def num(name: str) -> float:
        v = _number(row.get(name))
        return -math.inf if v is None else v

    w, h = num("width"), num("height")

    def share(name: str) -> float:  # a share of the frame; null as 0
        v = _number(row.get(name))
        return 0.0 if v is None else v

    active = (1 - share("border_top") - share("border_bottom")) * (1 - share("border_left") - share("border_right"))
    pixels = round(100 * math.log(w * h * active)) if w > 0 and h > 0 and active > 0 else -math.inf
    clean = clean_detail(row.get("detail"), row.get("noise_floor"))
    graphics = round(1000 * (share("overlay_area") + share("subtitle_area")))
    path, start = row.get("source_path"), _number(row.get("start_s"))
    return (
        -pixels,
        round(1 - active, 6),  # to 1e-6: a mirror image's bars, left and right swapped, sum in another order
        -num("duration_s"),
        graphics,
        -num("aesthetic"),
        math.inf if clean is None else -clean,
        -num("sharpness"),
        (path is None, str(path or "")),
        math.inf if start is None else start,
        str(row["clip_id"]),
    )


# quality_key's leading fields a clip and its mirror image must share for them to share the next ones (MIRROR_SHARED)
COARSE_FIELDS = 4  # pixels, bars, duration, graphics
MIRROR_SHARED = slice(4, 7)  # aesthetic, clean detail, sharpness


# clean_detail: the noise level (grey levels of noise_floor) that halves a copy's worth
NOISE_HALF = 20.0


def clean_detail(detail: Any, noise_floor: Any) -> float | None:
    """A copy's fine detail discounted by its noise: ``detail / (1 + noise_floor / NOISE_HALF)``, None when either is
    missing (a row scored before schema 10). Orders copies of the same footage inside a duplicate group.

    detail: ``scores.detail`` (share of the best tiles' variance under 2 px above the noise floor, 0..1);
    noise_floor: ``scores.noise_floor`` (grey levels). The Laplacian variance (``sharpness``) this replaced as the
    tie-break rises with grain, so dedup kept a grained or salt-and-pepper copy over the clean one (a newcomer's
    try); detail alone does not see grain (it is above the floor) and falls with compression and blur; the discount
    makes the noisier of two equally detailed copies lose. Measured by bench/dedup_keep_bench.py (7 shots, the clean
    CRF-18 copy against grain of sigma 7 and 3, CRF 28 and 35 and a sigma-1 blur: 35 pairs): this key keeps the clean
    copy in 32, sharpness in 21, focus in 26, detail alone in 27; ``NOISE_HALF`` 20 and 40 score alike, 10 31, 5 30
    (the misses: carphone's CRF-28 and -35 copies, whose encoder smooths the noise floor, and one light grain). With
    schema 16's four grid phases: this key 33 (``NOISE_HALF`` 40: 34), detail alone 30, focus 23 (the misses:
    carphone's CRF-35 copy and one light grain).
    """

    d, n = _number(detail), _number(noise_floor)
    return None if d is None or n is None else d / (1.0 + max(0.0, n) / NOISE_HALF)


def _number(v: Any) -> float | None:
    """A stored score as a float, None for null or NaN."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def duplicate_pairs(
    table: pa.Table, cfg: DedupConfig | None = None, *, details: bool = False
) -> tuple[list[list[int]], list[tuple]]:
    """Exact-duplicate groups and verified near-duplicate pairs, as row numbers of ``table``.

    Returns (exact_groups, near_pairs): each exact group lists >= 2 rows with identical signatures; near pairs
    join one representative row of distinct signatures (its lowest row). Rows with a null or empty phash are ignored.
    ``details``: each near pair is (x, y, only_mirrored, bits): only_mirrored True when the two match only with one
    of them mirrored (a mirror image of the other); bits the smallest mean per-anchor Hamming distance over the
    alignments compared (either orientation, anchor by anchor or shifted), in bits of 64: how near the match is.
    """
    import duckdb

    cfg = cfg or DedupConfig()
    if 64 % cfg.band_bits or not 1 <= cfg.band_bits <= 64:
        raise ValueError(f"band_bits must divide 64, got {cfg.band_bits}")
    cols = {"i": pa.array(range(table.num_rows), pa.int64()), "phash": table["phash"].cast(pa.list_(pa.int64()))}
    cols["mirror"] = (
        table["phash_mirror"].cast(pa.list_(pa.int64()))
        if "phash_mirror" in table.column_names
        else pa.nulls(table.num_rows, pa.list_(pa.int64()))
    )
    use_emb = cfg.min_cosine is not None and "clip_embedding" in table.column_names
    if use_emb:
        cols["emb"] = table["clip_embedding"].cast(pa.list_(pa.float32()))
    sigs = pa.table(cols)

    con = duckdb.connect()
    try:
        if cfg.threads:
            con.execute(f"SET threads = {int(cfg.threads)}")
        con.register("sigs", sigs)
        con.execute("CREATE TEMP TABLE s AS SELECT * FROM sigs WHERE phash IS NOT NULL AND len(phash) > 0")
        exact = [
            sorted(r[0]) for r in con.execute("SELECT list(i) FROM s GROUP BY phash HAVING count(*) > 1").fetchall()
        ]
        # One representative per distinct signature: the near-duplicate search runs on those only.
        con.execute(
            "CREATE TEMP TABLE reps AS SELECT min(i) AS i, phash, any_value(mirror) AS mirror"
            + (", any_value(emb) AS emb" if use_emb else "")
            + " FROM s GROUP BY phash"
        )
        nb, bits = 64 // cfg.band_bits, cfg.band_bits
        band = "h" if bits == 64 else f"(h >> (b * {bits})) & {(1 << bits) - 1}"
        con.execute(
            f"""
            CREATE TEMP TABLE keys AS
            WITH fr AS (
                SELECT i, 0 AS m, len(phash) AS n, generate_subscripts(phash, 1) AS f, unnest(phash) AS h FROM reps
                UNION ALL
                SELECT i, 1 AS m, len(mirror) AS n, generate_subscripts(mirror, 1) AS f, unnest(mirror) AS h
                FROM reps WHERE mirror IS NOT NULL AND len(mirror) = len(phash)),
                 bands AS (SELECT i, m, n, f, b, {band} AS v FROM fr, range({nb}) t(b))
            SELECT i, m, n, f, b, v FROM bands
            QUALIFY count(*) OVER (PARTITION BY n, f, b, v) BETWEEN 2 AND {int(cfg.max_bucket)}
            """
        )
        # offset copies: a key also stands at the anchor positions up to max_shift away (an equi-join still: an
        # inequality on the position made DuckDB's join 50x slower), while MIN_OVERLAP anchors still overlap
        ms = max(0, int(cfg.max_shift))
        shifted = (
            f"(SELECT i, m, n, f + k AS f, b, v FROM keys, range({-ms}, {ms + 1}) t(k) "
            f"WHERE k = 0 OR abs(k) <= n - {MIN_OVERLAP})"
        )
        emb_cond = ""
        if use_emb:
            cosine = f"list_cosine_similarity(ra.emb, rb.emb) >= {float(cfg.min_cosine)}"
            emb_cond = f" AND (ra.emb IS NULL OR rb.emb IS NULL OR {cosine})"
        # a candidate pair shares a band of the plain hashes, or of one clip's plain and the other's mirrored hashes
        t = float(cfg.max_hamming)

        def mean_bits(p: str, q: str) -> str:
            return f"list_avg(list_transform(list_zip({p}, {q}), lambda z: bit_count(xor(z[1], z[2]))))"

        def shifted_bits(p: str, q: str) -> str:
            """SQL: the best mean distance of p's anchor i against q's i - k over the shifts k != 0 that leave >=
            MIN_OVERLAP anchors overlapping (NULL where none does)."""
            terms = []
            for k in (k for k in range(-ms, ms + 1) if k):
                a, b = (f"list_slice({p}, {1 + k}, len({p}))", f"list_slice({q}, 1, len({q}) - {k})")
                if k < 0:  # 1-based list_slice, ends inclusive
                    a, b = (f"list_slice({p}, 1, len({p}) + {k})", f"list_slice({q}, {1 - k}, len({q}))")
                terms.append(f"CASE WHEN len({p}) - {abs(k)} >= {MIN_OVERLAP} THEN {mean_bits(a, b)} END")
            return f"least({', '.join(terms)})" if terms else "NULL::DOUBLE"

        # per orientation (plain; rb mirrored; ra mirrored) its distance anchor by anchor (d*) and at the best shift
        # (s*), each computed once: a pair is a near copy in an orientation when d <= max_hamming or s <=
        # max_shift_hamming (the best of several alignments reads low by chance: stricter); its bits are the least
        sides = {
            "p": ("ra.phash", "rb.phash", None),
            "m": ("ra.phash", "rb.mirror", "rb"),
            "n": ("ra.mirror", "rb.phash", "ra"),
        }
        cols = []
        for name, (p, q, guard) in sides.items():
            for kind, expr in (("d", mean_bits(p, q)), ("s", shifted_bits(p, q))):
                cols.append(f"CASE WHEN {guard}.mirror IS NOT NULL THEN {expr} END" if guard else expr)
                cols[-1] += f" AS {kind}{name}"

        def match(name: str) -> str:
            return f"(d{name} <= {t} OR s{name} <= {float(cfg.max_shift_hamming)})"

        near = con.execute(
            f"""
            WITH cand AS (
                SELECT DISTINCT least(a.i, c.i) AS x, greatest(a.i, c.i) AS y FROM keys a JOIN {shifted} c
                ON a.n = c.n AND a.f = c.f AND a.b = c.b AND a.v = c.v
                WHERE a.m = 0 AND a.i <> c.i AND (c.m = 1 OR a.i < c.i)),
            dist AS (
                SELECT x, y, {", ".join(cols)}
                FROM cand JOIN reps ra ON ra.i = cand.x JOIN reps rb ON rb.i = cand.y
                WHERE TRUE{emb_cond})
            SELECT x, y, NOT coalesce({match("p")}, FALSE), least(dp, sp, dm, sm, dn, sn)
            FROM dist WHERE {match("p")} OR {match("m")} OR {match("n")}
            """
        ).fetchall()
    finally:
        con.close()
    if details:
        return exact, [(int(x), int(y), bool(m), float(d)) for x, y, m, d in near]
    return exact, [(int(x), int(y)) for x, y, _, _ in near]


def columns(cfg: DedupConfig | None = None) -> tuple[str, ...]:
    """The stored columns :func:`find_duplicates` reads (the embeddings only when ``min_cosine`` is set)."""
    cfg = cfg or DedupConfig()
    base = ("clip_id", "phash", "phash_mirror", "width", "height", "duration_s", "aesthetic", "sharpness")
    base += ("detail", "noise_floor", "overlay_area", "subtitle_area")
    base += ("border_top", "border_bottom", "border_left", "border_right", "source_path", "start_s", "luma_mean")
    return (*base, "clip_embedding") if cfg.min_cosine is not None else base


def find_duplicates(table: pa.Table, cfg: DedupConfig | None = None) -> dict[str, str]:
    """Map each dropped duplicate clip_id to the clip_id it duplicates (a kept clip it matches itself).

    Reads: clip_id, phash (list<int64>), phash_mirror, luma_mean (another look is no copy: ``max_luma_shift``),
           and for choosing the kept copy width, height, duration_s, border_*, overlay_area, subtitle_area,
           aesthetic, detail, noise_floor, sharpness, source_path, start_s (all optional); clip_embedding when
           cfg.min_cosine is set
    Writes: nothing (returns the mapping; the pipeline sets drop_reason = "duplicate" and duplicate_of)
    Reasons: duplicate

    Input: the candidate rows that passed the other filters, from the whole dataset (not one video).
    Deterministic regardless of row order: within each connected component of the duplicate graph the clips are
    taken in a total order (``quality_key``, best first), and each is dropped when it matches a kept clip directly,
    or kept (see the module's docstring). The clip it is the duplicate of (``duplicate_of``) is the kept clip it
    matches most nearly (the smallest signature distance, :func:`duplicate_pairs`' bits; an identical signature 0;
    ties to the better ranked): a mirrored copy of a talking head also matched, at 11.8 bits, the next window of the
    same shot, which ranked first, and was named its duplicate rather than its own source (0.2 bits) (a newcomer's
    set).
    """
    cfg = cfg or DedupConfig()
    if table.num_rows == 0:
        return {}
    exact, near = duplicate_pairs(table, cfg, details=True)
    uf = _UnionFind(table.num_rows)
    rep = {}  # a row of an exact group -> the group's representative (its lowest row, as duplicate_pairs' reps)
    for group in exact:
        for j in group:
            rep[j] = group[0]
            uf.union(group[0], j)
    linked: dict[int, dict[int, float]] = {}  # verified near pairs, between representatives: their distance
    for x, y, _, bits in near:
        uf.union(x, y)
        linked.setdefault(x, {})[y] = bits
        linked.setdefault(y, {})[x] = bits

    luma = table["luma_mean"].to_pylist() if "luma_mean" in table.column_names else [None] * table.num_rows
    shift = cfg.max_luma_shift

    def distance(i: int, j: int) -> float | None:
        """The signature distance of clips i and j when they match (0 for identical signatures), else None."""
        ri, rj = rep.get(i, i), rep.get(j, j)
        bits = 0.0 if ri == rj else linked.get(ri, {}).get(rj)
        a, b = _number(luma[i]), _number(luma[j])
        if shift is not None and a is not None and b is not None and abs(a - b) > shift:
            return None  # another look is no copy
        return bits

    members: dict[int, list[int]] = {}
    for i in {i for g in exact for i in g} | {i for p in near for i in p[:2]}:
        members.setdefault(uf.find(i), []).append(i)
    # the columns quality_key reads: what columns() loads, less the signatures
    keys = [c for c in columns(cfg) if c not in ("phash", "phash_mirror", "clip_embedding")]
    wanted = [c for c in keys if c in table.column_names]
    info = table.select(wanted)
    recs = {i: info.slice(i, 1).to_pylist()[0] for rows in members.values() if len(rows) > 1 for i in rows}
    key = {i: quality_key(r) for i, r in recs.items()}
    key = _mirror_sides(key, near)
    out: dict[str, str] = {}
    for rows in members.values():
        if len(rows) < 2:
            continue
        kept: list[int] = []
        for i in sorted(rows, key=key.__getitem__):
            near_kept = [(d, n, j) for n, j in enumerate(kept) if (d := distance(i, j)) is not None]
            if not near_kept:
                kept.append(i)
            else:
                out[str(recs[i]["clip_id"])] = str(recs[min(near_kept)[2]]["clip_id"])
    return out


def _mirror_sides(key: dict[int, tuple], near: list[tuple[int, int, bool, float]]) -> dict[int, tuple]:
    """:func:`find_duplicates`' sort keys, a clip and its mirror image ranked as one picture.

    A clip and its mirror image hold the same picture; their detail differs by where the 32 px tiles fall on it (up
    to 12 % measured; with schema 16's four grid phases, not mirror images of each other, 0.89-1.10 over the hard
    set's seven pairs), their aesthetic by CLIP's reading of a flipped picture, not by quality. The clips joined by
    pairs that match only mirrored and are alike in pixels, bars, duration and graphics (``COARSE_FIELDS``) fall on
    two sides, one orientation each (two-coloured along those pairs; a set that cannot be, or whose plain pairs cross
    the sides, keeps its own keys). All of them rank by the set's best aesthetic, detail and sharpness
    (``MIRROR_SHARED``), then the side holding the first source path (keep the first), then each clip's own key: so
    within a side a copy's own detail still orders it (a worse re-encode of the original after the original, even
    where it matches the mirror as well and its path sorts first). Every key is given the same shape:
    (coarse, shared, side, own shared, rest)."""
    n = MIRROR_SHARED.stop
    out = {i: (*k[:COARSE_FIELDS], *k[MIRROR_SHARED], 0, *k[MIRROR_SHARED], *k[n:]) for i, k in key.items()}
    edges: dict[int, list[int]] = {}
    for x, y, only_mirrored, _ in near:
        if only_mirrored and x in key and y in key and key[x][:COARSE_FIELDS] == key[y][:COARSE_FIELDS]:
            edges.setdefault(x, []).append(y)
            edges.setdefault(y, []).append(x)
    plain: dict[int, list[int]] = {}
    for x, y, only_mirrored, _ in near:
        if not only_mirrored:
            plain.setdefault(x, []).append(y)
            plain.setdefault(y, []).append(x)
    side: dict[int, int] = {}
    for start in edges:
        if start in side:
            continue
        side[start], todo, group, ok = 0, [start], [start], True
        while todo:
            i = todo.pop()
            for j in edges[i]:
                if j not in side:
                    side[j] = 1 - side[i]
                    todo.append(j)
                    group.append(j)
                ok &= side[j] != side[i]
        members = set(group)
        ok &= not any(j in members and side[j] != side[i] for i in group for j in plain.get(i, ()))
        if not ok:
            continue
        shared = min(key[i][MIRROR_SHARED] for i in group)
        first = side[min(group, key=lambda i: key[i][n:])]
        for i in group:
            k = key[i]
            out[i] = (*k[:COARSE_FIELDS], *shared, int(side[i] != first), *k[MIRROR_SHARED], *k[n:])
    return out
