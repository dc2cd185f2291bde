"""Nested configs: built-in defaults, a YAML recipe on top, then ``key=value`` overrides.

* Keys are dotted paths into nested dicts (``optim.lr=1e-4``, ``data.crop=[256,512]``).
* Values are parsed as YAML scalars/flow collections (``true``, ``null``, ``[1, 5, 9]``); a string
  that looks like a number (YAML 1.1 reads ``1e-4`` as a string) becomes a float where the default
  is a number.
* Only keys that exist in the defaults may be set, in the YAML file or on the command line; an
  unknown key raises :class:`ConfigError` naming it (and the closest known keys). A default dict
  accepts only its own keys.
* A schema (dotted key → :class:`Rule`, built with :func:`integer`, :func:`number`,
  :func:`one_of`, :func:`text`, :func:`list_of`) states each value's type and range: positive learning rates and sizes,
  integers where counts are meant, probabilities in [0, 1]. :func:`validate` checks a resolved
  config against it and raises one :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import copy
import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from model.errors import UserError

from .atomic import atomic_write_text


class ConfigError(UserError, ValueError):
    """A config file, override or command-line value that does not fit the defaults or the schema."""

    exit_code = 2


class ResumeConflictError(ConfigError):
    """Resuming a run with settings that differ from the ones its weights were trained with."""

    exit_code = 6


def flat_keys(tree: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, Mapping):
            keys.extend(flat_keys(value, path + "."))
    return keys


def _unknown(key: str, known: Iterable[str], where: str) -> ConfigError:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _coerce(key: str, default: Any, value: Any, where: str) -> Any:
    """``value`` converted to the default's type where that is unambiguous."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} in {where} expects true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"config key {key!r} in {where} expects a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} in {where} expects a number, got {value!r}")
        try:
            as_float = float(value)
        except OverflowError:
            raise ConfigError(f"config key {key!r} in {where}: {value} is out of range") from None
        if isinstance(default, float):
            return as_float
        return int(value) if as_float.is_integer() else as_float
    if isinstance(default, list) and isinstance(value, list):
        return [_coerce_item(v) for v in value]
    return value


def _coerce_item(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def merge(base: dict, update: Mapping, where: str, prefix: str = "") -> dict:
    """``base`` updated in place by ``update``; keys must exist in ``base``."""
    for key, value in update.items():
        path = f"{prefix}{key}"
        if key not in base:
            raise _unknown(path, flat_keys(base, prefix), where)
        current = base[key]
        if isinstance(current, dict) and current and isinstance(value, Mapping):
            merge(current, value, where, path + ".")
        elif isinstance(current, dict) and current:
            raise ConfigError(f"config key {path!r} in {where} is a section; set its keys "
                              f"({', '.join(sorted(current))}) instead of {value!r}")
        else:
            base[key] = _coerce(path, current, copy.deepcopy(value), where)
    return base


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=value"`` → (``"a.b"``, parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, TypeError) as err:  # PyYAML's constructors raise ValueError too ('2001-02-30')
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key, value


def set_key(cfg: dict, key: str, value: Any, where: str = "command line") -> None:
    """Set a dotted key that must already exist."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            raise _unknown(key, flat_keys(cfg), where)
        node = node[part]
    leaf = parts[-1]
    if not isinstance(node, dict) or leaf not in node:
        raise _unknown(key, flat_keys(cfg), where)
    merge(node, {leaf: value}, where, ".".join(parts[:-1]) + "." if len(parts) > 1 else "")


def get_key(cfg: Mapping, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
    except (yaml.YAMLError, ValueError, TypeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping, got {type(data).__name__}")
    return data


def build_config(defaults: Mapping, path: str | os.PathLike | None = None,
                 overrides: Iterable[str] = ()) -> dict:
    """Defaults ← YAML file ← overrides; returns a new plain dict."""
    cfg = copy.deepcopy(dict(defaults))
    if path is not None:
        merge(cfg, load_yaml(path), str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value)
    return cfg


# ---------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Rule:
    """What one config value may be: its type (``int``, ``float``, ``str``, ``list``), range, choices,
    list items and length, and whether ``null`` is allowed. Build rules with the functions below."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple = ()
    item: Rule | None = None
    length: int | None = None
    null: bool = False

    def describe(self) -> str:
        """The rule in words, e.g. ``"an integer >= 1 or null"``."""
        if self.choices:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "list":
            text = (f"a list of {self.length} values" if self.length else "a list") + f", each {self.item.describe()}"
        else:
            text = {"int": "an integer", "float": "a number", "str": "a string"}[self.kind]
            if self.low is not None and self.high is not None:
                text += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                text += f" <= {self.high:g}"
        return text + (" or null" if self.null else "")

    def check(self, key: str, value: Any) -> Any:
        """``value`` normalised (integral floats of an integer key become ints); :class:`ConfigError` otherwise."""
        if value is None:
            if self.null:
                return None
            raise self._error(key, value)
        if self.choices:
            if value not in self.choices:
                raise self._error(key, value)
            return value
        if self.kind == "list":
            if not isinstance(value, (list, tuple)) or (self.length is not None and len(value) != self.length):
                raise self._error(key, value)
            return [self.item.check(f"{key}[{i}]", v) for i, v in enumerate(value)]
        if self.kind == "str":
            if not isinstance(value, str):
                raise self._error(key, value)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._error(key, value)
        if self.kind == "int":
            if not float(value).is_integer():
                raise self._error(key, value)
            value = int(value)
        else:
            value = float(value)
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            raise self._error(key, value)
        return value

    def _error(self, key: str, value: Any) -> ConfigError:
        return ConfigError(f"config key {key!r} must be {self.describe()}, got {value!r}")


def integer(min: int | None = None, max: int | None = None, null: bool = False) -> Rule:
    """An integer in [min, max] (a float such as ``5.5`` is refused, ``5.0`` becomes 5)."""
    return Rule("int", min, max, null=null)


def number(min: float | None = None, max: float | None = None, above: float | None = None, null: bool = False) -> Rule:
    """A finite number in [min, max], or greater than ``above`` (exclusive)."""
    if above is not None:
        return Rule("float", above, max, low_open=True, null=null)
    return Rule("float", min, max, null=null)


def one_of(*choices: Any, null: bool = False) -> Rule:
    return Rule("choice", choices=tuple(choices), null=null)


def text(null: bool = False) -> Rule:
    return Rule("str", null=null)


def list_of(item: Rule, length: int | None = None, null: bool = False) -> Rule:
    return Rule("list", item=item, length=length, null=null)


#: Common rules.
POSITIVE_INT = integer(min=1)
PROBABILITY = number(0.0, 1.0)
WEIGHT = number(min=0.0)
PATH = text(null=True)


def validate(cfg: dict, rules: Mapping[str, Rule]) -> dict:
    """Check ``cfg`` against ``rules`` in place (normalising values) and return it; the first value
    that breaks its rule raises :class:`ConfigError` naming the key."""
    for key, rule in rules.items():
        parts = key.split(".")
        node = cfg
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = rule.check(key, node[parts[-1]])
    return cfg


def dump(cfg: Mapping) -> str:
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=False)


def save_config(cfg: Mapping, path: str | os.PathLike) -> None:
    """Write the resolved config atomically as YAML."""
    atomic_write_text(dump(cfg), path)


def _plain(value: Any) -> Any:
    """Only dicts, lists, str, int, float, bool, None (YAML- and ``weights_only``-safe)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def plain(cfg: Mapping) -> dict:
    return _plain(cfg)
