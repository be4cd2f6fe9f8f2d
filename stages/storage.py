"""Local paths and object-storage URIs (``s3://``, ``gs://``, ``az://``, ``https://`` ...) behind one small interface.

Object storage goes through fsspec (https://filesystem-spec.readthedocs.io), the filesystem layer pandas, Dask, Ray
Data and Hugging Face ``datasets`` share, with its per-scheme packages: s3fs for ``s3://`` (botocore credentials:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``, ``~/.aws/config``, instance roles, and
``AWS_ENDPOINT_URL`` for S3-compatible stores such as MinIO), gcsfs for ``gs://`` (``GOOGLE_APPLICATION_CREDENTIALS``,
gcloud's application-default credentials), adlfs for ``az://``. Chosen over ``pyarrow.fs``: it covers more schemes,
its file objects are what PyAV reads from, and it honours the standard variables of each cloud's own SDK.

Videos in object storage are decoded without copying them first: PyAV reads through a seekable fsspec file that
fetches :data:`READ_BLOCK` byte ranges on demand (HTTP range requests), so a seek reads only what the demuxer asks for.
A local path is passed to FFmpeg as a path, exactly as before.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any, BinaryIO

_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")

# bytes fetched per range request when reading an object; fsspec's "readahead" cache keeps the last block
READ_BLOCK = 4 << 20


def scheme(path: str | os.PathLike) -> str | None:
    """The URI scheme of ``path`` ("s3", "gs", ...), or None for a local path (``file://`` counts as local)."""
    m = _URI.match(str(path))
    if m is None or m.group(1).lower() == "file":
        return None
    return m.group(1).lower()


def is_uri(path: str | os.PathLike) -> bool:
    """True for an object-storage (or other remote) URI, False for a local path."""
    return scheme(path) is not None


def as_path(path: str | os.PathLike) -> str | Path:
    """A local path as a ``Path``; a URI kept as a string (``Path("s3://b/k")`` would collapse the "//")."""
    return str(path) if is_uri(path) else Path(local(path))


def local(path: str | os.PathLike) -> str:
    """A local path with any ``file://`` prefix removed."""
    s = str(path)
    return s[len("file://") :] if s.lower().startswith("file://") else s


def filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of ``uri``. Raises ``UnsupportedURI``-worthy errors as ValueError with
    what to install (fsspec says "Install s3fs to access S3" as an ImportError)."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(uri)
    except ImportError as e:
        raise ValueError(f"no filesystem for {uri}: {e}") from e
    except ValueError as e:  # "Protocol not known: foo"
        raise ValueError(f"no filesystem for {uri}: {e}") from e


def full_uri(fs: Any, path: str, like: str) -> str:
    """``path`` inside ``fs`` written as a URI with the scheme of ``like`` (``s3://bucket/key``)."""
    return f"{scheme(like)}://{path.lstrip('/')}" if scheme(like) else path


def open_read(path: str | os.PathLike, block_size: int = READ_BLOCK) -> BinaryIO:
    """A seekable binary file for reading ``path`` (local or URI); the caller closes it."""
    if not is_uri(path):
        return open(local(path), "rb")  # noqa: SIM115 - the caller closes it
    fs, p = filesystem(str(path))
    return fs.open(p, "rb", block_size=block_size, cache_type="readahead")


def av_source(path: str | os.PathLike) -> Any:
    """What ``av.open`` should be given for ``path``: the path itself when local (FFmpeg reads it), a seekable fsspec
    file for a URI (PyAV reads through it with range requests; the file is closed when collected)."""
    return local(path) if not is_uri(path) else open_read(path)


def info(path: str | os.PathLike) -> dict[str, Any]:
    """{"size": bytes, "mtime": seconds since the epoch or None, "type": "file" | "directory"}.

    Raises FileNotFoundError when there is nothing at ``path``."""
    if not is_uri(path):
        p = local(path)
        st = os.stat(p)
        return {"size": st.st_size, "mtime": st.st_mtime, "type": "directory" if os.path.isdir(p) else "file"}
    fs, p = filesystem(str(path))
    d = fs.info(p)
    mtime = d.get("LastModified") or d.get("mtime") or d.get("updated") or d.get("last_modified")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    elif isinstance(mtime, str):
        from datetime import datetime

        try:
            mtime = datetime.fromisoformat(mtime.replace("Z", "+00:00")).timestamp()
        except ValueError:
            mtime = None
    return {"size": int(d.get("size") or 0), "mtime": mtime, "type": d.get("type", "file")}


def size(path: str | os.PathLike) -> int:
    """Size in bytes of the file or object at ``path``."""
    return int(info(path)["size"])


def is_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a regular file (local) or an object (URI)."""
    if not is_uri(path):
        return os.path.isfile(local(path))
    try:
        return info(path)["type"] == "file"
    except FileNotFoundError:
        return False


def read_text(path: str | os.PathLike) -> str:
    """The whole text of a (small) file or object, UTF-8 with an optional BOM."""
    with open_read(path) as f:
        return f.read().decode("utf-8-sig", errors="replace")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to a local file (atomically: a temporary name, then a rename) or an object (a single
    PUT, atomic by the store's semantics)."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a local file (atomically: a temporary name, then a rename) or an object (a single PUT,
    with the content type its name implies, e.g. ``text/html`` for a report a browser opens from the bucket)."""
    if not is_uri(path):
        p = Path(local(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return
    import mimetypes

    fs, p = filesystem(str(path))
    kind = mimetypes.guess_type(p)[0]
    # the object's Content-Type: s3fs passes ContentType to PutObject, gcsfs takes content_type
    extra = {"s3": {"ContentType": kind}, "s3a": {"ContentType": kind}, "gs": {"content_type": kind}}
    fs.pipe_file(p, data, **(extra.get(scheme(str(path)), {}) if kind else {}))


def remove(path: str | os.PathLike) -> None:
    """Delete one file or object; raises FileNotFoundError when there is none."""
    if not is_uri(path):
        os.remove(local(path))
        return
    fs, p = filesystem(str(path))
    if not fs.exists(p):
        raise FileNotFoundError(path)
    fs.rm_file(p)


def arrow_filesystem(path: str | os.PathLike) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for writers that take one (Ray Data's ``write_parquet``): the fsspec
    filesystem wrapped by ``pyarrow.fs.FSSpecHandler`` for a URI, the local filesystem otherwise."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return pafs.LocalFileSystem(), os.path.abspath(local(path))
    fs, p = filesystem(str(path))
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), p


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory (or every object under a prefix); nothing there is fine."""
    if not is_uri(path):
        import shutil

        shutil.rmtree(local(path), ignore_errors=True)
        return
    fs, p = filesystem(str(path))
    if fs.exists(p):
        fs.rm(p, recursive=True)


def join(base: str, rel: str) -> str:
    """``rel`` resolved against the directory ``base`` (a URI prefix or a local directory); an absolute ``rel``
    (a URI or an absolute local path) is returned as is."""
    if is_uri(rel) or os.path.isabs(rel):
        return rel
    if is_uri(base):
        proto, rest = base.split("://", 1)
        return f"{proto}://{posixpath.normpath(posixpath.join(rest, rel))}"
    return os.path.abspath(os.path.join(base, os.path.expanduser(rel)))


def dirname(path: str) -> str:
    """The directory (prefix) holding ``path``."""
    if is_uri(path):
        proto, rest = path.split("://", 1)
        return f"{proto}://{posixpath.dirname(rest)}"
    return os.path.dirname(path)


def under(root: str | os.PathLike | None, rel: str | os.PathLike) -> str | Path:
    """``rel`` (a clip_path: relative to OUT) under the dataset directory ``root``: a ``Path`` when ``root`` is local,
    a URI string when it is a bucket prefix; ``rel`` as given when ``root`` is None or ``rel`` is absolute."""
    if root is None or is_uri(rel) or os.path.isabs(str(rel)):
        return as_path(str(rel))
    if is_uri(root):
        return join(str(root), str(rel))
    return Path(local(root)) / str(rel)


def location(path: str | os.PathLike) -> str | Path:
    """A dataset directory OUT as clipforge holds it: an absolute ``Path`` when local, the URI (no trailing "/")
    when in object storage."""
    if is_uri(path):
        return str(path).rstrip("/")
    return Path(local(path)).expanduser().resolve()


def exists(path: str | os.PathLike) -> bool:
    """True when there is a file, directory, object or prefix at ``path``."""
    if not is_uri(path):
        return os.path.exists(local(path))
    fs, p = filesystem(str(path))
    return bool(fs.exists(p))


def list_dirs(path: str | os.PathLike) -> list[str]:
    """Names of the directories (prefixes) directly under ``path``; empty when there is none."""
    if not is_uri(path):
        p = local(path)
        return sorted(d for d in os.listdir(p) if os.path.isdir(os.path.join(p, d))) if os.path.isdir(p) else []
    fs, p = filesystem(str(path))
    try:
        entries = fs.ls(p, detail=True, refresh=True)
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory")


def put_file(local_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy the local file ``local_path`` to ``path``: an upload for a URI (one PUT, or a multipart upload that
    the store makes visible only when complete), an atomic rename into place for a local path."""
    if not is_uri(path):
        Path(local(path)).parent.mkdir(parents=True, exist_ok=True)
        os.replace(local_path, local(path))
        return
    fs, p = filesystem(str(path))
    fs.put_file(str(local_path), p)


def delta_options(path: str | os.PathLike) -> dict[str, str] | None:
    """``storage_options`` for delta-rs (the ``deltalake`` package) at ``path``: None for a local path. delta-rs
    reads the cloud's standard environment variables itself (``AWS_*`` including ``AWS_ENDPOINT_URL``,
    ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_*``); the one thing added here is ``AWS_ALLOW_HTTP`` when the S3
    endpoint is plain http (a local MinIO or test server), which delta-rs otherwise refuses."""
    if not is_uri(path):
        return None
    options: dict[str, str] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if scheme(path) in ("s3", "s3a") and endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    if scheme(path) in ("s3", "s3a") and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        options["AWS_REGION"] = "us-east-1"  # botocore's default; delta-rs has none
    return options


_FIXED: dict[type, type] = {}


def _fixed_filesystem(fs: Any) -> Any:
    """The filesystem ``fs`` (same class, same options) that looks up the facts (size, modification time) of a file
    it was told never changes (:func:`immutable`) once, not again on every open. DuckDB asks for them each time a
    query reads a Parquet file of a view (``exists``, ``size``, ``modified``, then ``open``: a HEAD request each on
    S3), so a report over a bucket OUT made ~2,500 HEADs of its 5 data files. Other paths go to ``fs`` as they
    are. For the async object stores (s3fs, gcsfs, adlfs: every lookup is their ``_info``); any other filesystem is
    returned as it is. Instances are shared per class and options, as fsspec's own."""
    import inspect

    cls = type(fs)
    if not inspect.iscoroutinefunction(getattr(cls, "_info", None)):
        return fs
    sub = _FIXED.get(cls)
    if sub is None:

        class Fixed(cls):  # type: ignore[misc, valid-type]
            async def _info(self, path, *args, **kwargs):
                # (s3fs passes the path's own bucket and key positionally; a refresh or a version looks again)
                key = self._strip_protocol(path)
                if kwargs.get("refresh") or kwargs.get("version_id") or key not in self.fixed_files:
                    return await super()._info(path, *args, **kwargs)
                if key not in self.fixed_info:
                    self.fixed_info[key] = await super()._info(path, *args, **kwargs)
                return dict(self.fixed_info[key])

        Fixed.__name__ = Fixed.__qualname__ = f"Fixed{cls.__name__}"
        sub = _FIXED[cls] = Fixed
    fixed = sub(**fs.storage_options)
    if not hasattr(fixed, "fixed_files"):
        fixed.fixed_files, fixed.fixed_info = set(), {}
    return fixed


def immutable(path: str | os.PathLike, uris: list[str]) -> None:
    """Tell the filesystem DuckDB reads ``path``'s store through (:func:`register_duckdb`) that the files ``uris``
    never change (Delta Lake data files: each written once under a unique name, only ever deleted), so their facts
    are looked up once per process. A no-op for local paths."""
    if is_uri(path) and uris:
        fs = _fixed_filesystem(filesystem(str(path))[0])
        if hasattr(fs, "fixed_files"):  # an async object store (the others look facts up as they always did)
            fs.fixed_files.update(fs._strip_protocol(u) for u in uris)


def register_duckdb(con: Any, path: str | os.PathLike) -> Any:
    """Let the DuckDB connection ``con`` read the URIs of ``path``'s store: the fsspec filesystem registered with
    ``con.register_filesystem`` (DuckDB's Python API; no httpfs extension, which is a download), in its
    :func:`_fixed_filesystem` form (the facts of files that never change looked up once). A no-op for a local
    path. Returns ``con``."""
    if is_uri(path):
        fs = _fixed_filesystem(filesystem(str(path))[0])
        names = set(con.list_filesystems()) if hasattr(con, "list_filesystems") else set()
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if not protocols & names:
            con.register_filesystem(fs)
    return con


def glob(directory: str | os.PathLike, pattern: str) -> list[str | Path]:
    """Files directly in ``directory`` whose names match ``pattern`` (fnmatch), sorted: ``Path``s when local, URIs
    when in object storage; empty when the directory does not exist."""
    if not is_uri(directory):
        d = Path(local(directory))
        return sorted(d.glob(pattern)) if d.is_dir() else []
    fs, p = filesystem(str(directory))
    return sorted(full_uri(fs, q, str(directory)) for q in fs.glob(f"{p.rstrip('/')}/{pattern}"))
