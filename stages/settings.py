"""The base of every stage's config dataclass: a setting holds a value of its declared type or the assignment fails.

The CLI and config files already read each value as its field's type (``pipeline.config``); from Python nothing did,
so ``FiltersConfig(min_focus="0.4")`` was accepted and failed only where a stage compared a string with a float, or,
worse, never (``"0" or default``). :class:`Settings` checks every assignment, the dataclass constructor's included,
against the field's annotation (``typing.get_type_hints``), with the numeric tower of PEP 484: an ``int`` is a valid
``float``, a ``bool`` is neither. Infrastructure like ``stages/media.py``: not a stage.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

import numpy as np


class Settings:
    """Mixin for a ``@dataclass`` of settings: assigning a value that is not of the field's declared type raises.

    Checked: ``int`` (Python's or numpy's integers, not a bool), ``float`` (those or Python's or numpy's floats, not
    a bool), ``str``, ``bool`` (Python's or numpy's), ``X | None``, ``list[X]`` / ``tuple[X, ...]`` (a list or a
    tuple, each item checked), ``dict`` (a dict). Other annotations (``Any``, ``Literal``, classes of the user's) are
    not checked, and a class one of whose annotations does not resolve is not checked at all; nor is a frozen
    dataclass's constructor (it bypasses ``__setattr__``). Nothing is parsed: ``"0.4"`` for a float is an error, not
    0.4 (the CLI and the config files parse their text first, ``pipeline.config._coerce``); a numpy scalar is stored
    as Python's and a list as a tuple where the setting is one, so that ``config.json`` saves and reloads it.

    Raises:
        TypeError: ``"FiltersConfig.min_focus must be float | None, got str '0.4'"``.
        AttributeError: a name that is not a setting (a misspelled key set after construction; names starting with
            ``_`` are free for the class's own use).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        hints = _hints(type(self))
        if hints and name not in hints and not name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}")  # a misspelled key, set later
        hint = hints.get(name)
        if hint is not None:
            if not _matches(value, hint):
                raise TypeError(
                    f"{type(self).__name__}.{name} must be {_show(hint)}, got {type(value).__name__} {value!r}"
                )
            value = _plain(value, hint)
        object.__setattr__(self, name, value)


def _plain(value: Any, tp: Any) -> Any:
    """A checked value as the config's files hold it: numpy scalars as Python's, a list as a tuple where the setting
    is a tuple (``config.json`` and ``clipforge config`` write Python's types only)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        arms = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        kind = tuple if any(typing.get_origin(t) is tuple for t in arms) else type(value)
        return kind(_plain(v, None) for v in value)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve (a user's class): leave that class unchecked
        return {}


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:  # Python's or numpy's integers (a Fraction or a Decimal would not save to config.json)
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return len(inner) != 1 or all(_matches(v, inner[0]) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True  # an annotation this does not know: unchecked


def _show(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
