"""The base of every stage's config dataclass: a setting holds a value of its declared type or the assignment fails.

The CLI and config files already read each value as its field's type (``pipeline.config``); from Python nothing did,
so ``FiltersConfig(min_focus="0.4")`` was accepted and failed only where a stage compared a string with a float, or,
worse, never (``"0" or default``). :class:`Settings` checks every assignment, the dataclass constructor's included,
against the field's annotation (``typing.get_type_hints``), with the numeric tower of PEP 484: an ``int`` is a valid
``float``, a ``bool`` is neither. Infrastructure like ``stages/media.py``: not a stage.
"""

from __future__ import annotations

import functools
import numbers
import types
import typing
from typing import Any


class Settings:
    """Mixin for a ``@dataclass`` of settings: assigning a value that is not of the field's declared type raises.

    Checked: ``int`` (an integral number, not a bool), ``float`` (any real number, not a bool), ``str``, ``bool``,
    ``X | None``, ``list[X]`` / ``tuple[X, ...]`` (a list or a tuple, each item checked), ``dict`` (a dict). Other
    annotations (``Any``, classes of the user's) are not checked. Values are never converted: ``"0.4"`` for a float is
    an error, not 0.4 (the CLI and the config files convert their text first, ``pipeline.config._coerce``).

    Raises:
        TypeError: ``"FiltersConfig.min_focus must be float | None, got str '0.4'"``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        hint = _hints(type(self)).get(name)
        if hint is not None and not _matches(value, hint):
            raise TypeError(
                f"{type(self).__name__}.{name} must be {_show(hint)}, got {type(value).__name__} {value!r}"
            )
        object.__setattr__(self, name, value)


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
        return isinstance(value, (bool,)) or type(value).__name__ == "bool_"  # numpy's bool too
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
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
