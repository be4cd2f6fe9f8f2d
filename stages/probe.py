"""Probe one input video: identity (content hash, video id), stream facts, and whether it really decodes.

One ingest row in, one ``videos`` row out (the columns of ``pipeline.schema.VIDEOS``). Broken inputs are
data, never exceptions: every failure becomes ``status="error"`` with an ``error_type`` and a message, so
the ``videos`` table accounts for every file that was named.

Cost per file: one streamed read for the content hash, one demux-only pass over the video packets (frame
count, packet timing, bitrate, truncation) that also decodes packets only until the first frame comes out.
No full decode.

Conventions of the columns written here (docs/SCHEMA.md quotes them):

- ``video_id``: first 16 hex chars of ``blake2b(f"{content_hash}|{abs path}")`` (default digest size);
  ``content_hash`` is ``""`` in that formula when the file cannot be read.
- ``content_hash``: blake2b, digest_size=16, hex, of the whole file.
- ``container``: FFmpeg's demuxer name, as ffprobe's ``format_name`` (``mov,mp4,m4a,3gp,3g2,mj2``,
  ``matroska,webm``, ``avi`` ...).
- ``rotation``: degrees CLOCKWISE to turn the decoded frame for display (0/90/180/270), i.e. the value of
  the legacy ``rotate`` tag; a portrait phone video reads 90. Taken from the display matrix that FFmpeg
  attaches to decoded frames, or the ``rotate`` tag when there is no matrix.
- ``num_frames``: video packets counted by demuxing (one packet per frame for the codecs we take), which is
  exact where header counts are missing (Matroska/WebM) or wrong (truncated files).
- ``fps``: the stream's average frame rate; for a variable-rate stream, or when the declared rate is more than 1 %
  off the timestamps' mean, ``num_frames / duration_s``. ``fps_nominal``: the declared rate (FFmpeg's guess).
- ``width``/``height``/``pix_fmt``: of the first decoded frame (coded size, before rotation).
- ``fps_variable``: more than 2 % of the presentation-time steps differ from the median step by more than
  max(1 tick, 5 %) (tolerates the 41/42 ms rounding of millisecond time bases).
- ``duration_s``: presentation span of the demuxed video packets (first pts to last pts + its duration),
  falling back to the stream's then the container's header duration; ``num_frames / fps`` for a truncated file.
- ``bitrate``: VIDEO bitrate in bit/s = bytes of the demuxed video packets * 8 / duration_s (the
  container's overall bitrate only when that cannot be computed).
- A truncated file whose first part still demuxes and decodes is ``status="ok"``: ``num_frames`` counts only
  the packets fully inside the file, ``error_type`` stays null and ``error`` carries a note starting with
  ``"Truncated:"``. Truncated so that nothing can be read (e.g. an MP4 cut before its ``moov`` index) is
  ``status="error"``, ``error_type="Truncated"``. Truncation is read from the sizes the container declares
  (MP4/MOV boxes, the Matroska/WebM Segment, the AVI RIFF chunk), a short frame count against the header's,
  or a demuxer that stops early. Other notes on ok rows: ``"CorruptPackets: ..."`` (packets the demuxer
  flagged corrupt, not counted) and ``"StartsMidGOP: ..."`` (a stream cut before its first keyframe: the
  packets before it decode to nothing and are not counted). Notes are joined with ``"; "``.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import av

from stages import storage
from stages.errors import raise_if_environment
from stages.ingest import license_id
from stages.media import Colour, display_size, pick_video_stream, sample_aspect_ratio

HASH_CHUNK = 8 << 20  # 8 MiB reads for the content hash
# Packets to feed the decoder, from the first keyframe on, before giving up on a first frame (B-frame reorder
# delays the first output by a few packets; a stream that yields nothing after this many is undecodable).
MAX_DECODE_PACKETS = 64
# Packets fed before any keyframe shows up (a transport stream cut mid-GOP starts with undecodable ones).
MAX_PRE_KEYFRAME_PACKETS = 1000

# Exactly the columns of pipeline.schema.VIDEOS (stages/ never imports pipeline/; a test checks they match).
_COLUMNS = (
    "video_id",
    "path",
    "status",
    "error_type",
    "error",
    "duplicate_of",
    "content_hash",
    "size_bytes",
    "mtime",
    "container",
    "codec",
    "pix_fmt",
    "width",
    "height",
    "rotation",
    "fps",
    "fps_nominal",
    "fps_variable",
    "num_frames",
    "duration_s",
    "bitrate",
    "has_audio",
    "video_stream",
    "start_time_s",
    "sar",
    "display_width",
    "display_height",
    "color_range",
    "color_space",
    "color_primaries",
    "color_transfer",
    "hdr",
    "original_caption",
    "spans",
    "source_url",
    "license",
    "license_id",
    "creator",
    "consent",
    "tags",
    "probe_s",
)

# ISO-BMFF (MP4/MOV/3GP) top-level box types that may start a file; used to tell "truncated" from "garbage".
_BMFF_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"sidx"}


class ProbeError(Exception):
    """A classified probe failure: ``error_type`` is what lands in the table."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def video_id_for(content_hash: str | None, path: str) -> str:
    """Deterministic id of an input: same bytes at the same path -> same id across runs."""
    return hashlib.blake2b(f"{content_hash or ''}|{path}".encode()).hexdigest()[:16]


def content_hash_of(path: str) -> str:
    """blake2b (16-byte digest) hex of the whole file, streamed in 8 MiB chunks."""
    h = hashlib.blake2b(digest_size=16)
    with storage.open_read(path, block_size=HASH_CHUNK) as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def planned_hash(path: str) -> str | None:
    """The ``content_hash`` :func:`probe` will give ``path``, computed ahead of probing (the run decides duplicate
    files before it probes), or None where probe gives none (a missing, empty, unreadable or non-regular file,
    an object that cannot be read): such a file's probe reports its error and hashes nothing. Errors of the
    environment (``stages.errors``) are raised."""
    try:
        if not storage.is_file(path) or storage.size(path) == 0:
            return None
        return content_hash_of(path)
    except Exception as e:  # noqa: BLE001 - the probe reports the input's error; the environment's stop the run
        raise_if_environment(e, f"hash of {path}")
        return None


def probe(row: dict) -> dict:
    """Probe one input file and return its ``videos`` row; never raises.

    Reads: path, original_caption, spans, input_error, source_url, license, creator, consent, tags (ingest rows)
    Writes: every column of pipeline.schema.VIDEOS (duplicate_of stays null: the driver fills it)
    Reasons: status "error" with error_type EmptyFile | InvalidData | Truncated | NoVideoStream | NoVideoFrames |
        UnsupportedCodec | DecodeError | FileNotFoundError | PermissionError | IsADirectoryError, or the type
        ingest put in ``input_error`` (UnsupportedURI, NoVideoFiles, ValueError ...); "ok" otherwise, with a
        typed note in ``error`` (Truncated: / CorruptPackets: / StartsMidGOP:) for a damaged but readable file.
    """
    t0 = time.perf_counter()
    raw_path = str(row.get("path") or "")
    path = raw_path if "://" in raw_path else os.path.abspath(raw_path) if raw_path else raw_path
    out: dict[str, Any] = dict.fromkeys(_COLUMNS)
    out.update(path=path, original_caption=row.get("original_caption"), spans=_spans(row.get("spans")))
    out.update({k: row.get(k) for k in ("source_url", "license", "creator", "consent")})
    out["license_id"] = license_id(out["license"])  # the SPDX id of a Creative Commons licence, however written
    tags = row.get("tags")
    out["tags"] = list(tags) if tags is not None and len(tags) else None  # Ray may hand a numpy array
    try:
        if row.get("input_error"):
            etype, _, msg = str(row["input_error"]).partition(": ")
            raise ProbeError(etype if msg else "InputError", msg or etype)
        if not raw_path:
            raise ProbeError("InputError", "ingest row has no path")
        out["content_hash"] = row.get("content_hash")  # hashed already when the run planned (pipeline/stream.py)
        _probe_file(path, out)
        out["status"] = "ok"
    except ProbeError as e:
        out.update(status="error", error_type=e.error_type, error=str(e))
    except OSError as e:  # FileNotFoundError, PermissionError, IsADirectoryError, ...
        raise_if_environment(e, f"probe of {path}")
        if e.strerror:
            msg = f"{e.strerror}: {path}"
        elif isinstance(e, FileNotFoundError):  # object stores raise it with the key only
            msg = f"no such file or object: {path}"
        else:
            msg = str(e)
        out.update(status="error", error_type=type(e).__name__, error=msg)
    except Exception as e:  # a probe must never take the run down: the error is data (its environment may)
        raise_if_environment(e, f"probe of {path}")
        out.update(status="error", error_type=type(e).__name__, error=str(e) or repr(e))
    out["video_id"] = video_id_for(out["content_hash"], path)
    out["probe_s"] = time.perf_counter() - t0
    return out


def exclude_hdr(row: dict) -> dict:
    """Mark an ok HDR ``videos`` row (``hdr`` = pq | hlg) as excluded by ``ingest.drop_hdr``; other rows pass."""
    if row.get("status") == "ok" and row.get("hdr"):
        row.update(
            status="error",
            error_type="HDRExcluded",
            error=f"HDR source ({row['hdr']}) excluded by ingest.drop_hdr = true; set it false to keep its clips "
            "as 10-bit HDR with their colour tags",
        )
    return row


def _spans(spans: Any) -> list[dict] | None:
    """Spans as a list (Ray hands list columns read from Arrow over as numpy arrays); empty -> None."""
    if spans is None:
        return None
    try:
        listed = [dict(s) for s in spans]
    except (TypeError, ValueError):  # not a list of mappings: ingest never writes that; keep the probe total
        return None
    return listed or None


def _probe_file(path: str, out: dict[str, Any]) -> None:
    st = storage.info(path)
    out.update(size_bytes=st["size"], mtime=st["mtime"])
    if st["type"] == "directory":
        raise IsADirectoryError(21, "Is a directory, not a video file")
    if st["size"] == 0:
        raise ProbeError("EmptyFile", "file is empty (0 bytes)")
    out["content_hash"] = out.get("content_hash") or content_hash_of(path)
    try:
        container = av.open(storage.av_source(path), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as e:
        # The bytes were just read whole for the hash, so an FFmpeg read failure here (invalid data, early
        # end of file, EIO from a demuxer) is about the content, not the disk.
        trunc = truncation(path, st["size"])
        if trunc:
            raise ProbeError("Truncated", f"{trunc}; FFmpeg cannot open it ({e.strerror})") from None
        raise ProbeError("InvalidData", f"not a readable media file (FFmpeg: {e.strerror or e})") from None
    with container:
        _probe_container(container, path, st["size"], out)


@dataclass
class _Pass:
    """What one demux pass over the video packets learned."""

    n_packets: int = 0  # every non-empty packet the demuxer returned
    n_complete: int = 0  # ... of which whole (not cut by EOF, not flagged corrupt)
    n_bytes: int = 0
    n_hidden: int = 0  # packets an edit list hides (not frames)
    pts: list[int] = field(default_factory=list)
    last_duration: int = 0
    first_key: int | None = None  # index (among complete packets) of the first keyframe
    first_frame: av.VideoFrame | None = None
    frame_before_key: bool = False  # the first frame came out before any keyframe was fed
    fed: int = 0  # packets fed to the decoder
    decode_error: Exception | None = None
    demux_error: str | None = None  # why demuxing stopped before the end of the file


def _demux_pass(container: av.container.InputContainer, stream: av.video.stream.VideoStream, size: int) -> _Pass:
    """Read every video packet once (no decode) and decode only until the first frame comes out."""
    r = _Pass()
    after_key = 0  # packets fed from the first keyframe on
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet demux() yields at EOF
                continue
            if packet.is_discard:
                # Hidden by an edit list (lossless trim): not a frame, but the decoder needs it (a hidden keyframe
                # opens the GOP the first visible frames decode from).
                if r.first_key is None and packet.is_keyframe:
                    r.first_key = r.n_complete
                r.n_hidden += 1
                if r.first_frame is None and r.fed < MAX_DECODE_PACKETS + MAX_PRE_KEYFRAME_PACKETS:
                    r.fed += 1
                    try:
                        packet.decode()
                    except av.error.FFmpegError as e:
                        r.decode_error = e
                continue
            r.n_packets += 1
            # A packet cut by the end of the file (the demuxer flags it corrupt, or its bytes run past the end)
            # is not a frame that downstream stages can decode.
            if packet.is_corrupt or (packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size):
                continue
            if r.first_key is None and packet.is_keyframe:
                r.first_key = r.n_complete
            r.n_complete += 1
            r.n_bytes += packet.size
            if packet.pts is not None:
                r.pts.append(packet.pts)
                r.last_duration = packet.duration or r.last_duration
            if r.first_frame is not None:
                continue
            after_key += r.first_key is not None
            if after_key > MAX_DECODE_PACKETS or r.fed >= MAX_DECODE_PACKETS + MAX_PRE_KEYFRAME_PACKETS:
                continue
            r.fed += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                r.decode_error = e
                continue
            if frames:
                r.first_frame = frames[0]
                r.frame_before_key = r.first_key is None
    except av.error.FFmpegError as e:
        r.demux_error = f"read error: {e.strerror or e}"
    except IndexError:
        # PyAV 18 cannot follow a stream that appears mid-file (MPEG-TS programs that change, or corrupt PIDs):
        # its stream table is fixed at open. What was read so far stands.
        r.demux_error = "a new stream appeared mid-file"
    if r.first_frame is None and r.fed:
        try:  # drain the decoder: short streams may hold their only frames in its reorder buffer
            frames = stream.decode(None)
            r.first_frame = frames[0] if frames else None
        except av.error.FFmpegError as e:
            r.decode_error = e
    return r


def _probe_container(container: av.container.InputContainer, path: str, size: int, out: dict[str, Any]) -> None:
    out["container"] = container.format.name
    out["has_audio"] = len(container.streams.audio) > 0
    stream = pick_video_stream(container)
    if stream is None:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise ProbeError("NoVideoStream", f"no video stream (streams: {', '.join(kinds)}; cover art is not video)")
    out["video_stream"] = stream.index
    cc = stream.codec_context
    if cc is None:  # FFmpeg knows no decoder for the stream's codec id
        raise ProbeError("UnsupportedCodec", "FFmpeg has no decoder for the codec of the video stream")
    # canonical codec name ("av1"), not the decoder implementation ("libdav1d")
    out.update(codec=cc.codec.canonical_name, pix_fmt=cc.pix_fmt, width=cc.width or None, height=cc.height or None)
    out["rotation"] = _rotation_from_tag(stream.metadata.get("rotate"))
    # Only this stream's packets are read into Python; one thread: the decoder is used for one frame only.
    for s in container.streams:
        if s is not stream:
            s.discard = av.stream.Discard.all
    cc.thread_count = 1
    r = _demux_pass(container, stream, size)

    # Packets before the first keyframe (a stream cut mid-GOP) decode to nothing: they are not frames.
    leading = r.first_key if (r.first_key and not r.frame_before_key) else 0
    n_frames = r.n_complete - leading
    header_frames = stream.frames or 0
    trunc = truncation(path, size)
    truncated = (
        bool(trunc)
        or r.demux_error is not None
        or header_frames > r.n_complete + r.n_hidden
        or r.n_packets > r.n_complete
    )
    rate = stream.average_rate or stream.guessed_rate
    tb = stream.time_base
    pts = r.pts
    if truncated and len(pts) > 2:
        # The tail of a cut file misses the frames that reordered (B) packets point past: drop the last
        # reorder window so the gaps do not read as variable timing.
        pts = sorted(pts)[: max(3, len(pts) - 16)]
    duration_s = None
    if (truncated or leading) and rate and n_frames > 0:
        duration_s = n_frames / float(rate)
    elif pts and tb:
        # The last frame lasts as long as the interval before it (packets often carry no duration; players do
        # the same); a one-frame stream uses its packet duration.
        ordered = sorted(pts)
        last = ordered[-1] - ordered[-2] if len(ordered) > 1 else (r.last_duration or 0)
        span = ordered[-1] - ordered[0] + last
        duration_s = float(span * tb) if span > 0 else None
    if duration_s is None and stream.duration and tb:
        duration_s = float(stream.duration * tb)
    if duration_s is None and container.duration:
        duration_s = container.duration / av.time_base
    fps_variable = _is_variable(pts) if len(pts) > 2 else False
    mean = n_frames / duration_s if duration_s and n_frames > 1 else None
    if mean and (fps_variable or not rate or abs(float(rate) - mean) > 0.01 * mean):
        # variable rate, or a header rate the timestamps contradict (a file muxed as 25 fps whose frames come 30
        # per second): the rate a player plays is the timestamps' mean
        fps = mean
    else:
        fps = float(rate) if rate else None
    nominal = stream.guessed_rate or stream.base_rate or rate
    out.update(num_frames=n_frames, duration_s=duration_s, fps_variable=fps_variable, fps=fps)
    out["fps_nominal"] = float(nominal) if nominal else fps
    if pts and tb:
        out["start_time_s"] = float(min(pts) * tb)
    out["bitrate"] = round(r.n_bytes * 8 / duration_s) if duration_s and r.n_bytes else container.bit_rate or None

    if r.first_frame is not None:
        f = r.first_frame
        out["rotation"] = (-round(f.rotation)) % 360 if f.rotation else out["rotation"]
        out.update(pix_fmt=f.format.name, width=f.width, height=f.height)
    sar = sample_aspect_ratio(stream)
    out["sar"] = f"{sar.numerator}:{sar.denominator}" if sar else None
    if out["width"] and out["height"]:
        out["display_width"], out["display_height"] = display_size(out["width"], out["height"], sar, out["rotation"])
    out.update(Colour.of(r.first_frame if r.first_frame is not None else cc).names())

    if r.n_complete == 0:
        if trunc:
            raise ProbeError("Truncated", f"{trunc}; no complete video packet")
        why = f" ({r.demux_error})" if r.demux_error else ""
        raise ProbeError("NoVideoFrames", f"the {out['codec']} video stream has no packets{why}")
    if r.first_frame is None:
        why = f": {r.decode_error.strerror or r.decode_error}" if r.decode_error else ""
        raise ProbeError(
            "DecodeError",
            f"no video frame decodes from the first {r.fed} of {r.n_complete} {out['codec']} packets{why}",
        )

    # Readable but incomplete: keep the row usable and say so (status ok, a typed note in `error`).
    notes = []
    cut = []
    if trunc:
        cut.append(trunc)
    if r.demux_error is not None:
        cut.append(f"demuxing stopped after {r.n_packets} packets ({r.demux_error})")
    if header_frames > r.n_complete + r.n_hidden:
        cut.append(f"header announces {header_frames} frames, {r.n_complete + r.n_hidden} are present")
    if cut:
        if r.n_packets > r.n_complete:
            cut.append(f"{r.n_packets - r.n_complete} incomplete packet(s) left out")
        # The last frames of a cut file can be whole packets that still do not decode (their reference frames
        # were cut away): count the frames that really come out of the decoder, so every reader agrees.
        decodable = decodable_prefix(path, size)
        if decodable is not None and decodable < n_frames:
            cut.append(f"the last {n_frames - decodable} whole packet(s) do not decode")
            n_frames = decodable
            out["num_frames"] = n_frames
            if rate:
                out["duration_s"] = n_frames / float(rate)
        notes.append(f"Truncated: {'; '.join(cut)}; num_frames counts the {n_frames} frames present")
    elif r.n_packets > r.n_complete:
        notes.append(
            f"CorruptPackets: {r.n_packets - r.n_complete} packet(s) the demuxer flagged corrupt are not counted"
        )
    if leading:
        notes.append(f"StartsMidGOP: the {leading} packets before the first keyframe do not decode; not counted")
    out["error"] = "; ".join(notes) or None


def decodable_prefix(path: str, size: int | None = None) -> int | None:
    """How many frames, from the first in presentation order, decode without a gap (one full decode; used for
    truncated files only). None when the stream's timestamps cannot number its frames."""
    from stages.media import PtsIndex, decode_frames, open_video

    container, stream = open_video(path)
    with container:
        index = PtsIndex.build(container, stream, size)
    if index is None:
        return None
    got = set()
    container, stream = open_video(path)
    stream.thread_type = "SLICE"  # frame threading loses the frames queued behind the damaged packet at the cut
    with container:
        for frame in decode_frames(container, stream):
            i = index.index_of(frame.pts)
            if i is not None:
                got.add(i)
    n = 0
    while n in got:
        n += 1
    return n


def _rotation_from_tag(tag: str | None) -> int:
    try:
        return int(round(float(tag))) % 360 if tag else 0
    except ValueError:
        return 0


def _is_variable(pts: list[int]) -> bool:
    steps = [b - a for a, b in zip(sorted(set(pts)), sorted(set(pts))[1:], strict=False)]
    if len(steps) < 2:
        return False
    med = statistics.median(steps)
    tol = max(1.0, 0.05 * med)
    irregular = sum(abs(s - med) > tol for s in steps)
    return irregular > 0.02 * len(steps)


def truncation(path: str, size: int) -> str | None:
    """Where a file is cut, if its container declares a length that runs past the end of the file.

    FFmpeg reports a cut file as "invalid data", or reads what is there without complaint; the sizes that
    ISO-BMFF (MP4/MOV) boxes, the Matroska/WebM Segment and the AVI RIFF chunk declare tell a truncated
    download apart from a file that was never a video. Reads a few header bytes only.
    """
    try:
        with storage.open_read(path, block_size=1 << 16) as f:
            head = f.read(64)
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _matroska_truncation(head, size)
            if head[:4] == b"RIFF" and len(head) >= 12:
                declared = 8 + int.from_bytes(head[4:8], "little")
                if declared > size:
                    kind = head[8:12].decode("latin-1").strip()
                    return (
                        f"file ends at byte {size} inside the RIFF '{kind}' chunk declared to end at byte {declared}"
                    )
                return None
            return _bmff_truncation(f, size)
    except OSError:
        return None


def _ebml_vint(buf: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of the EBML variable-length integer at buf[pos]; None when it does not parse."""
    if pos >= len(buf) or buf[pos] == 0:
        return None
    length = 9 - buf[pos].bit_length()
    if pos + length > len(buf):
        return None
    value = int.from_bytes(buf[pos : pos + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, length


def _matroska_truncation(head: bytes, size: int) -> str | None:
    """Compare the Segment element's declared end with the file size (live streams write "unknown size")."""
    hdr = _ebml_vint(head, 4, keep_marker=False)
    if hdr is None:
        return None
    pos = 4 + hdr[1] + hdr[0]  # past the EBML header element
    seg_id = _ebml_vint(head, pos, keep_marker=True)
    if seg_id is None or seg_id[0] != 0x18538067:
        return None
    pos += seg_id[1]
    seg_size = _ebml_vint(head, pos, keep_marker=False)
    if seg_size is None:
        return None
    value, length = seg_size
    if value == (1 << (7 * length)) - 1:  # all ones: unknown size
        return None
    declared = pos + length + value
    if declared > size:
        return (
            f"file ends at byte {size} inside the Matroska Segment declared to end at byte {declared} "
            f"({size / declared:.0%} of it present)"
        )
    return None


def _bmff_truncation(f: Any, size: int) -> str | None:
    """Walk the top-level ISO-BMFF boxes (8-16 header bytes each) of an open file; say where one runs past the end."""
    offset = 0
    first = True
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(16)
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if (first and box_type not in _BMFF_FIRST_BOXES) or not box_type.isalnum():
            return None  # not ISO-BMFF, or trailing bytes that are not a box: no claim either way
        first = False
        if box_size == 1 and len(header) >= 16:
            box_size = struct.unpack(">Q", header[8:16])[0]
        elif box_size == 0:  # box runs to the end of the file by definition
            return None
        if box_size < 8:
            return None
        if offset + box_size > size:
            kind = box_type.decode("latin-1")
            return (
                f"file ends at byte {size} inside the '{kind}' box declared to end at byte "
                f"{offset + box_size} ({size / (offset + box_size):.0%} of it present)"
            )
        offset += box_size
    return None


__all__ = ["probe", "planned_hash", "exclude_hdr", "video_id_for", "content_hash_of", "truncation", "ProbeError"]
