"""How a setting is declared, read from the environment and checked: `infra/settings.py` declares each one once, as a
field of `Settings` made with `setting(...)`, and everything else (parsing `from_env`, validation on every
construction path, the README's table) reads that declaration."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

# What an unset numeric variable may be bounded by when its declaration names no range: wide enough for any
# sensible value, narrow enough that a typo of a few extra digits is refused rather than overflowing a client.
INT_RANGE = (0, 2**31)
FLOAT_RANGE = (0.0, 1e9)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class _DataclassDefault:
    def __repr__(self) -> str:
        return "DATACLASS_DEFAULT"


# `from_env` leaves the field to its dataclass default (`dataclasses.MISSING` cannot be a dataclass field's default).
DATACLASS_DEFAULT: Any = _DataclassDefault()


class SettingsError(ValueError):
    """A setting has a value gapstream cannot use; the message names the variable."""


@dataclass(frozen=True)
class Spec:
    """What `setting(...)` records about one variable; `Declared` adds what the dataclass field knows."""

    env: str
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    # What the default means, for the table: "off", "unset: no web search"'s "no web search".
    means: str = ""
    # The table's default cell when the default is computed rather than a value (`$GAPSTREAM_HOME/images`).
    shown: Optional[str] = None
    # What `from_env` uses when the variable is unset, where that differs from the dataclass default (or there is
    # none): a text read as if the variable held it, None, or a function of the values read so far.
    env_default: Any = DATACLASS_DEFAULT
    # Applied to the variable's text before it is parsed (`str.upper` for log levels); `from_env` only.
    normalise: Optional[Callable[[str], str]] = None
    # A check beyond type, range and choices: returns what is wrong with the value ("must be a multiple of 8").
    rule: Optional[Callable[[Any], Optional[str]]] = None


@dataclass(frozen=True)
class Declared:
    """One setting as declared: the variable, the `Settings` field it fills, its type and default."""

    spec: Spec
    field: str
    kind: type  # int, float, bool, str or Path
    optional: bool
    default: Any  # dataclasses.MISSING: the constructor requires it

    @property
    def env(self) -> str:
        return self.spec.env

    @property
    def low(self) -> Optional[float]:
        if self.kind in (int, float):
            return (INT_RANGE if self.kind is int else FLOAT_RANGE)[0] if self.spec.low is None else self.spec.low
        return None

    @property
    def high(self) -> Optional[float]:
        if self.kind in (int, float):
            return (INT_RANGE if self.kind is int else FLOAT_RANGE)[1] if self.spec.high is None else self.spec.high
        return None


def setting(env: str, default: Any = MISSING, *,
            help: str,  # noqa: A002 - argparse's name for the same line
            low: Optional[float] = None, high: Optional[float] = None, choices: tuple[str, ...] = (),
            secret: bool = False, means: str = "",
            shown: Optional[str] = None, env_default: Any = DATACLASS_DEFAULT,
            normalise: Optional[Callable[[str], str]] = None,
            rule: Optional[Callable[[Any], Optional[str]]] = None) -> Any:
    """A `Settings` field read from `env`. `help` says in one line what it is for (the README's table shows it);
    a `secret` is left out of `repr` and its default out of the table."""
    spec = Spec(env=env, help=help, low=low, high=high, choices=choices, secret=secret, means=means, shown=shown,
                env_default=env_default, normalise=normalise, rule=rule)
    return dataclasses.field(default=default, repr=not secret, metadata={"setting": spec})


def declared(cls: type) -> tuple[Declared, ...]:
    """Every setting of `cls`, in field order; a field made without `setting(...)` is a mistake, not a constant."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("setting")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with setting(...)")
        kind, optional = _kind(hints[field.name])
        found.append(Declared(spec=spec, field=field.name, kind=kind, optional=optional, default=field.default))
    envs = [d.env for d in found]
    if len(set(envs)) != len(envs):
        raise TypeError(f"a variable is declared twice: {sorted(e for e in envs if envs.count(e) > 1)}")
    return tuple(found)


def _kind(hint: Any) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Union and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return inner, True
    return hint, False


def read_env(settings: tuple[Declared, ...], env: Mapping[str, str]) -> dict[str, Any]:
    """The constructor's arguments from `env`: the variables that are set, and the defaults `from_env` computes."""
    values: dict[str, Any] = {}
    for item in settings:
        raw = env.get(item.env)
        if raw is None or raw == "":
            fallback = item.spec.env_default
            if fallback is DATACLASS_DEFAULT:
                continue  # the dataclass default
            if callable(fallback):
                values[item.field] = fallback(values)
                continue
            if fallback is None:
                values[item.field] = None
                continue
            raw = fallback
        values[item.field] = parse(item, raw)
    return values


def parse(item: Declared, raw: str) -> Any:
    """A variable's text as the value of its field; a text that is not of the field's type is a `SettingsError`."""
    if item.spec.normalise is not None:
        raw = item.spec.normalise(raw)
    if item.kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingsError(f"{item.env} must be true or false, got {raw!r}")
    if item.kind is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{item.env} must be an integer, got {raw!r}") from None
    if item.kind is float:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{item.env} must be a number, got {raw!r}") from None
    if item.kind is Path:
        return Path(raw).expanduser()
    return raw


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path"}


def check(item: Declared, value: Any) -> None:
    """Raise `SettingsError` naming the variable unless `value` is one its field may hold."""
    if value is None and item.optional:
        return
    if not _is_kind(item.kind, value):
        raise SettingsError(f"{item.env} must be {_TYPE_NAMES[item.kind]}, got {value!r}")
    low, high = item.low, item.high
    if low is not None and high is not None and not low <= value <= high:  # NaN fails both comparisons too
        raise SettingsError(f"{item.env} must be between {low} and {high}, got {value}")
    if item.spec.choices and value not in item.spec.choices:
        raise SettingsError(f"{item.env} must be one of {', '.join(item.spec.choices)}, got {value!r}")
    complaint = item.spec.rule(value) if item.spec.rule is not None else None
    if complaint:
        shown = str(value) if isinstance(value, Path) else value
        raise SettingsError(f"{item.env} {complaint}, got {shown!r}")


def _is_kind(kind: type, value: Any) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never to an operator
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)
