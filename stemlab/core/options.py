"""Adapter options: one frozen dataclass per adapter on one validating base.

Every adapter parses its URL and keyword options into a subclass of
`BrokerOptions` before it connects anywhere. Each field carries a `Rule` that
checks and normalises its value, so an unknown option, a bad value or a
malformed URL part is one `ConfigError` line naming the option, the same way
for every adapter. URL query values are text and are parsed by the same rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult, parse_qsl, urlsplit

from stemlab.core.limits import check_lease
from stemlab.errors import ConfigError

__all__ = [
    "NAMESPACE_RULE",
    "BrokerOptions",
    "Rule",
    "Secret",
    "choice",
    "fixed",
    "integer",
    "lease",
    "option",
    "pattern",
    "redact_url",
    "seconds",
    "split_url",
]


@dataclass(frozen=True)
class Rule:
    """How one option is checked: `check(name, value)` returns the normalised value.

    `parse(name, text)` turns a URL query value into what `check` accepts.
    """

    check: Callable[[str, Any], Any]
    parse: Callable[[str, str], Any] = lambda name, text: text


class Secret:
    """A value (a password, a URL holding one) that never shows in a repr, str or error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"option {name} must be a number, got {text!r}") from None


def _whole(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"option {name} must be an integer, got {text!r}") from None


def _none_or(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    def parse_text(name: str, text: str) -> Any:
        return None if text.lower() in ("", "none") else parse(name, text)

    return parse_text


def seconds(*, zero_ok: bool = False, optional: bool = False) -> Rule:
    """A finite duration (float seconds or a timedelta), > 0 (or >= 0 with `zero_ok`)."""
    bound = ">= 0" if zero_ok else "> 0"

    def check(name: str, value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, timedelta):
            value = value.total_seconds()
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        if ok and math.isfinite(value) and (value >= 0 if zero_ok else value > 0):
            return float(value)
        none = " or None" if optional else ""
        raise ConfigError(
            f"option {name} must be a finite number of seconds {bound}{none}, got {value!r}"
        )

    return Rule(check, _none_or(_number) if optional else _number)


def lease() -> Rule:
    """A lease length: finite seconds (or a timedelta) within the limits of core/limits.py."""

    def check(name: str, value: Any) -> float:
        if isinstance(value, timedelta) or (
            not isinstance(value, bool) and isinstance(value, int | float)
        ):
            try:
                return check_lease(value, f"option {name}")
            except (TypeError, ValueError) as exc:
                raise ConfigError(str(exc)) from None
        raise ConfigError(f"option {name} must be a number of seconds, got {value!r}")

    return Rule(check, _number)


def integer(low: int, high: int | None = None, *, optional: bool = False) -> Rule:
    """An int in `low..high` (inclusive; no upper bound when `high` is None)."""
    span = f"in {low}..{high}" if high is not None else f">= {low}"

    def check(name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        ok = not isinstance(value, bool) and isinstance(value, int)
        if ok and value >= low and (high is None or value <= high):
            return int(value)
        raise ConfigError(f"option {name} must be an integer {span}, got {value!r}")

    return Rule(check, _none_or(_whole) if optional else _whole)


def choice(*values: str, fold: Callable[[str], str] = str.lower) -> Rule:
    """One of `values`, compared after `fold` (case folding by default)."""

    def check(name: str, value: Any) -> str:
        if isinstance(value, str) and fold(value) in values:
            return fold(value)
        raise ConfigError(f"option {name} must be one of {', '.join(values)}; got {value!r}")

    return Rule(check)


def pattern(regex: str, why: str = "") -> Rule:
    """A string matching `regex` in full."""
    compiled = re.compile(regex)

    def check(name: str, value: Any) -> str:
        if isinstance(value, str) and compiled.fullmatch(value):
            return value
        reason = f" ({why})" if why else ""
        raise ConfigError(f"option {name} must match {regex}{reason}, got {value!r}")

    return Rule(check)


# The strictest namespace rule any adapter needs: it prefixes every Redis key (so no
# ":" or glob characters), and appears in receipts and connection names.
NAMESPACE_RULE = pattern(r"[A-Za-z0-9_.-]{1,100}", "letters, digits, '_', '.', '-'")


def option(default: Any, rule: Rule | None = None) -> Any:
    """A dataclass field that is a user option, checked by `rule` on construction."""
    return field(default=default, metadata={"rule": rule, "option": True})


def fixed(default: Any = None) -> Any:
    """A field the adapter fills in from the URL itself; not a keyword option."""
    return field(default=default, metadata={"option": False})


@dataclass(frozen=True)
class BrokerOptions:
    """The options every adapter takes; subclasses add their own fields.

    Construct through `build`, which refuses unknown names and merges the URL's
    query options under the keyword ones.
    """

    scheme: ClassVar[str] = "broker"

    namespace: str = option("stem", NAMESPACE_RULE)
    default_visibility_timeout: float = option(30.0, lease())

    def __post_init__(self) -> None:
        for f in fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                object.__setattr__(self, f.name, rule.check(f.name, getattr(self, f.name)))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.metadata.get("option"))

    @classmethod
    def build(
        cls,
        options: Mapping[str, Any],
        query: Iterable[tuple[str, str]] = (),
        **url_parts: Any,
    ) -> Self:
        """Options from the URL's query text and keywords (keywords win), validated."""
        known = {f.name: f for f in fields(cls) if f.metadata.get("option")}
        merged: dict[str, Any] = {}
        for key, text in query:
            if key not in known:
                raise ConfigError(
                    f"unknown {cls.scheme}:// option {key!r} in the URL; known: "
                    f"{', '.join(sorted(known))}"
                )
            rule = known[key].metadata.get("rule")
            merged[key] = rule.parse(key, text) if rule is not None else text
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown {cls.scheme}:// option{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}"
            )
        merged.update(options)
        return cls(**url_parts, **merged)


_PASSWORD = re.compile(r"(?<=://)([^/?#@:]*):[^/?#]*@")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword=)[^&\s]*")


def redact_url(url: str) -> str:
    """`url` with any password (``user:secret@`` or ``password=...``) shown as ``***``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1:***@", url))


def split_url(
    url: str, schemes: tuple[str, ...], hint: str = ""
) -> tuple[SplitResult, list[tuple[str, str]]]:
    """`urlsplit` plus the query as pairs; anything malformed is a `ConfigError`.

    Error messages show the URL with its password redacted (`redact_url`).
    """
    tail = f" ({hint})" if hint else ""
    if not isinstance(url, str):
        raise ConfigError(f"a broker URL must be a string, got {type(url).__name__}")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigError(f"malformed URL {shown!r}: {exc}{tail}") from None
    if parts.scheme.lower() not in schemes:
        raise ConfigError(f"not a {' or '.join(s + '://' for s in schemes)} URL: {shown!r}")
    if parts.fragment:
        raise ConfigError(f"malformed URL {shown!r}: no #fragment expected{tail}")
    seen: set[str] = set()
    for key, _ in query:
        if key in seen:
            raise ConfigError(f"malformed URL {shown!r}: option {key!r} given twice")
        seen.add(key)
    return parts, query
