"""Errors of the input against errors of the environment.

Every stage turns an exception into data (an ``error_*`` column, a row that says why) so one bad file never stops a
run. That is right only for errors of the *input*: a corrupt stream, an undecodable frame, a missing or unreadable
source file. An error of the *environment* (the output disk is full, the quota is spent, the filesystem went
read-only, the process ran out of memory or file handles, the object store or the network is unreachable) says
nothing about the clip: recorded as a defect it would stay lost, since a rerun skips every clip that has a row.

So each stage's ``except`` asks :func:`raise_if_environment` first. An environment error becomes
:class:`EnvironmentFault`; Ray carries it to the driver, the run stops, ``clipforge run`` prints it and exits with
:data:`EXIT_ENVIRONMENT` (75, ``EX_TEMPFAIL`` of BSD ``sysexits.h``: "a temporary failure; the user is invited to
retry"). Nothing of the failed work was stored (each task's rows reach the store only through the sink, and clip files
are written to a temporary name and renamed), so the same command, rerun once the cause is fixed, redoes exactly that
work (the resume rules of the README).

The classification is by ``errno`` (POSIX, ``errno(3)``) and by exception type, walking ``__cause__`` /
``__context__``. ``EIO`` is deliberately *not* an environment error: FFmpeg reports some corrupt or truncated inputs as
``AVERROR(EIO)``, and those must stay error rows.
"""

from __future__ import annotations

import errno

# errno values that describe the machine, the filesystem or the network, never the content of one input
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",  # no space left on device
        "EDQUOT",  # disk quota exceeded
        "EROFS",  # read-only filesystem
        "ENOMEM",  # cannot allocate memory
        "EMFILE",  # too many open files (process)
        "ENFILE",  # too many open files (system)
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "EAGAIN",  # resource temporarily unavailable
    )
    if hasattr(errno, name)
)

# exit status of a run stopped by an environment error (BSD sysexits.h EX_TEMPFAIL)
EXIT_ENVIRONMENT = 75


class EnvironmentFault(RuntimeError):
    """An error of the environment, not of the input: the run stops, says so, and a rerun redoes the work.

    ``where`` names the stage (and the file, when known); the original exception is ``__cause__``.
    """

    def __init__(self, where: str, cause: BaseException):
        self.where = where
        super().__init__(f"{where}: {type(cause).__name__}: {cause}")


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


# exception class names (matched by name: no import of botocore or aiohttp needed) of an unreachable or refusing
# object store: botocore's and aiohttp's connection errors, missing credentials
ENVIRONMENT_TYPES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "NoCredentialsError",
        "ClientConnectorError",
        "ServerDisconnectedError",
    }
)


def in_chain(exc: BaseException, cls: type) -> BaseException | None:
    """The first exception of type ``cls`` in ``exc``'s ``__cause__`` / ``__context__`` chain, or None."""
    return next((e for e in _chain(exc) if isinstance(e, cls)), None)


def environment_cause(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that is an environment error, or None when it is an error of the input.

    Environment: :class:`EnvironmentFault`, ``MemoryError``, ``ConnectionError``, ``TimeoutError``, the object-store
    client errors named in :data:`ENVIRONMENT_TYPES`, and any ``OSError`` (PyAV's ``av.error.*`` included: they
    subclass ``OSError`` and carry FFmpeg's errno) or error of a Rust library (delta-rs) whose errno is in
    :data:`ENVIRONMENT_ERRNOS`. Everything else (``FileNotFoundError``, ``PermissionError`` on an input,
    ``av.error.InvalidDataError``, ``ValueError`` ...) is the input's.
    """
    for e in _chain(exc):
        if isinstance(e, (EnvironmentFault, MemoryError, ConnectionError, TimeoutError)):
            return e
        if type(e).__name__ in ENVIRONMENT_TYPES:
            return e
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
            return e
        if _rust_errno(e) in ENVIRONMENT_ERRNOS:
            return e
    return None


def _rust_errno(exc: BaseException) -> int | None:
    """The errno in an error raised by a Rust library (delta-rs' ``DeltaError`` wraps ``std::io::Error``, whose
    text ends "... (os error 28)"; Rust std ``impl Display for io::Error``), or None."""
    import re

    if isinstance(exc, OSError) and exc.errno is not None:
        return None  # an OSError with its own errno: classified by it
    found = re.findall(r"\(os error (\d+)\)", str(exc))
    return int(found[-1]) if found else None


def raise_if_environment(exc: BaseException, where: str) -> None:
    """Re-raise ``exc`` as :class:`EnvironmentFault` (from ``exc``) when it is an environment error; else return,
    and the caller records it as the input's error."""
    if isinstance(exc, EnvironmentFault):
        raise exc
    if environment_cause(exc) is not None:
        raise EnvironmentFault(where, exc) from exc


def find_fault(exc: BaseException) -> str | None:
    """The message of the environment error behind ``exc`` as the driver receives it (Ray wraps a worker's exception
    in ``RayTaskError`` and Ray Data in its own errors; their chains and messages keep the original), or None."""
    for e in _chain(exc):
        if isinstance(e, EnvironmentFault):
            return str(e)
        cause = getattr(e, "cause", None)  # ray.exceptions.RayTaskError keeps the worker's exception here
        if isinstance(cause, BaseException) and cause is not e:
            found = find_fault(cause)
            if found:
                return found
    cause = environment_cause(exc)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(exc)
    if "EnvironmentFault" in text:  # a wrapper that kept only the text
        return text.split("EnvironmentFault: ", 1)[-1].splitlines()[0]
    return None
