"""Property tests (hypothesis) of the config machinery in engine/config.py: ``parse_override``,
``set_key``, ``merge`` (through a YAML recipe) and ``build_config``, on random nested defaults.

* ``parse_override(f"{key}={yaml.safe_dump(value)}")`` gives back ``(key, value)`` for any YAML
  value (block or flow style), and arbitrary text gives a parsed value or a :class:`ConfigError`.
* Setting a key that does not exist (a typo, a key below a leaf, empty parts) raises exactly
  :class:`ConfigError` naming the key; a value of the wrong kind for a typed default (bool, number,
  section) too.
* Setting an existing key changes that key only, to the value converted as documented (numbers
  from ``1e-4``-style strings, integral floats of integer defaults become ints), leaves the defaults
  untouched, and a YAML recipe sets the same config as the equivalent overrides.

The bugs found (PyYAML's ValueErrors, integers beyond the float range, a section set to null) are
the tests at the end.
"""
from __future__ import annotations

import copy
import math

import pytest
import yaml
from hypothesis import assume, example, given
from hypothesis import strategies as st

from engine.config import ConfigError, build_config, get_key, parse_override, set_key
from tests.property_settings import property_settings

#: hundreds of random cases per test: the full suite runs them, the fast subset does not
pytestmark = pytest.mark.slow

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
DOTTED = st.lists(NAMES, min_size=1, max_size=4).map(".".join)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NUMBERS = st.one_of(st.integers(-10**9, 10**9), FINITE)
LEAF_DEFAULTS = st.one_of(st.none(), st.booleans(), st.integers(-100, 100), st.floats(-1e3, 1e3),
                          st.text(max_size=6), st.lists(st.integers(-5, 5) | st.floats(-5, 5), max_size=3))
DEFAULTS = st.dictionaries(NAMES, st.recursive(
    LEAF_DEFAULTS, lambda inner: st.dictionaries(NAMES, inner, min_size=1, max_size=3), max_leaves=10),
    min_size=1, max_size=4)
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key → value of every non-section entry."""
    found = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            found.update(leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def all_keys(tree: dict, prefix: str = "") -> set[str]:
    """Every dotted key, sections included."""
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict):
            keys |= all_keys(value, f"{prefix}{key}.")
    return keys


def dump(value) -> str:
    """A value as one would type it after ``key=`` (flow style, on one line where possible)."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf)


# ----------------------------------------------------------------------------------- parse_override
@property_settings(max_examples=300)
@given(key=DOTTED, value=YAML_VALUES, flow=st.booleans())
@example(key="optim.lr", value="1e-4", flow=True)
@example(key="a", value="x=y", flow=False)
def test_override_round_trips(key, value, flow):
    text = dump(value) if flow else yaml.safe_dump(value)  # one line, or YAML's block style
    assert parse_override(f"{key}={text}") == (key, value)
    assert parse_override(f" {key} ={text}") == (key, value)


def reference_override(text: str):
    """What parse_override must give: (key, value), or ConfigError for text without ``=``, an empty
    key, or a value PyYAML cannot load (whatever exception it raises)."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        return ConfigError
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip(), None
    try:
        return key.strip(), yaml.safe_load(raw)
    except Exception:  # noqa: BLE001 - YAMLError, or a ValueError from PyYAML's constructors
        return ConfigError


#: Override texts: anything, and pieces of YAML syntax that make odd values (tags, anchors, dates).
YAML_PIECES = st.sampled_from(["a", "b.c", "=", " ", "1", "1e-4", "-", ":", "[", "]", "{", "}", ",", "'", '"',
                               "!!int", "!!float", "!!str", "!!binary", "!!set", "&x", "*x", "#", "\n", "2001-02-03",
                               "12:30", "0x1F", "~", "null", "yes", ".inf", "?"])
OVERRIDE_TEXT = st.text(max_size=30) | st.lists(YAML_PIECES, max_size=10).map("".join)


def check_override_text(text: str) -> None:
    expected = reference_override(text)
    if expected is ConfigError:
        with pytest.raises(ConfigError) as info:
            parse_override(text)
        assert type(info.value) is ConfigError and repr(text) in str(info.value)
        return
    key, value = parse_override(text)
    assert key == expected[0]
    assert value == expected[1] or value != value and expected[1] != expected[1]  # NaN


# ----------------------------------------------------------------------------------- unknown keys
@st.composite
def unknown_keys(draw, cfg: dict) -> str:
    """A key that is not in ``cfg``: a typo of one, one below a leaf, empty parts, or anything."""
    known = sorted(all_keys(cfg))
    base = draw(st.sampled_from(known))
    how = draw(st.sampled_from(["below", "typo", "empty", "space", "random"]))
    if how == "below":
        key = f"{base}.{draw(NAMES)}"
    elif how == "typo":
        key = base[:-1] + draw(st.sampled_from("xyz_0"))
    elif how == "empty":
        key = draw(st.sampled_from([f"{base}.", f".{base}", base.replace(".", "..", 1) + "..", ""]))
    elif how == "space":
        key = f"{base} " if draw(st.booleans()) else base.replace(".", ". ", 1) + " x"
    else:
        key = draw(DOTTED)
    assume(key not in known)
    return key


@property_settings(max_examples=150)
@given(data=st.data(), cfg=DEFAULTS, value=YAML_VALUES)
def test_unknown_keys_raise_config_error_naming_them(data, cfg, value):
    key = data.draw(unknown_keys(cfg))
    before = copy.deepcopy(cfg)
    with pytest.raises(ConfigError) as info:
        set_key(cfg, key, value)
    assert type(info.value) is ConfigError and repr(key) in str(info.value)
    assert cfg == before
    if key.strip() == key and key:  # what an override can address (parse_override strips the key)
        with pytest.raises(ConfigError) as info:
            build_config(cfg, overrides=[f"{key}={dump(value)}"])
        assert type(info.value) is ConfigError and repr(key) in str(info.value)


@property_settings(max_examples=80)
@given(data=st.data(), cfg=DEFAULTS, where=NAMES)
def test_unknown_keys_inside_a_section_value_name_the_full_key(data, cfg, where):
    sections = sorted(k for k in all_keys(cfg) if isinstance(get_key(cfg, k), dict))
    assume(sections)
    section = data.draw(st.sampled_from(sections))
    assume(where not in get_key(cfg, section))
    with pytest.raises(ConfigError) as info:
        set_key(cfg, section, {where: 1})
    assert type(info.value) is ConfigError and repr(f"{section}.{where}") in str(info.value)


# ------------------------------------------------------------------------------ setting known keys
def typed_values(default) -> st.SearchStrategy:
    """Values a default of this kind accepts."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, (int, float)):
        return NUMBERS
    if isinstance(default, str):
        return st.text(max_size=8)
    if isinstance(default, list):
        return st.lists(NUMBERS, max_size=3)
    return YAML_VALUES  # a default of None takes anything


def converted(default, value):
    """The documented conversion: to a float for float defaults, integral numbers to ints for int ones."""
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return value
    if isinstance(default, float):
        return float(value)
    return int(value) if float(value).is_integer() else float(value)


@property_settings(max_examples=150)
@given(data=st.data(), cfg=DEFAULTS)
def test_setting_a_known_key_changes_that_key_only(data, cfg):
    flat = leaves(cfg)
    assume(flat)
    key = data.draw(st.sampled_from(sorted(flat)))
    value = data.draw(typed_values(flat[key]))
    before = copy.deepcopy(cfg)
    out = build_config(cfg, overrides=[f"{key}={dump(value)}"])
    assert cfg == before  # the defaults are copied, never changed
    expected = converted(flat[key], value)
    assert get_key(out, key) == expected and type(get_key(out, key)) is type(expected)
    def others(tree: dict) -> dict:  # every leaf but the key set (and what a dict value put below it)
        return {k: v for k, v in leaves(tree).items() if k != key and not k.startswith(key + ".")}

    assert others(out) == others(cfg)


#: Numbers as people type them: 1e-4, -2.5E+3, 3.0e2, 7 (YAML 1.1 reads several of these as strings).
SCIENTIFIC = st.builds(lambda sign, mantissa, dot, e, exp_sign, exp: f"{sign}{mantissa}{dot}{e}{exp_sign}{exp}",
                       st.sampled_from(["", "-", "+"]), st.integers(0, 999), st.sampled_from(["", ".", ".5"]),
                       st.sampled_from(["e", "E"]), st.sampled_from(["", "-", "+"]), st.integers(0, 30))


@property_settings(max_examples=200)
@given(text=SCIENTIFIC, default=st.sampled_from([0.1, 3]))
@example(text="1e-4", default=0.1)
@example(text="2e3", default=3)
def test_scientific_notation_sets_numbers(text, default):
    out = build_config({"optim": {"lr": default}}, overrides=[f"optim.lr={text}"])
    assert out["optim"]["lr"] == converted(default, float(text))
    assert type(out["optim"]["lr"]) is type(converted(default, float(text)))


@property_settings(max_examples=150)
@given(data=st.data(), cfg=DEFAULTS)
def test_values_of_the_wrong_kind_raise_config_error_naming_the_key(data, cfg):
    typed = {k for k in all_keys(cfg) if isinstance(get_key(cfg, k), (bool, int, float, dict))}
    assume(typed)
    key = data.draw(st.sampled_from(sorted(typed)))
    default = get_key(cfg, key)
    if isinstance(default, bool):
        wrong = st.one_of(NUMBERS, st.text(max_size=5), st.lists(st.booleans(), min_size=1))
    elif isinstance(default, (int, float)):
        wrong = st.one_of(st.booleans(), st.text(max_size=5).filter(lambda s: not _is_float(s)),
                          st.lists(NUMBERS, max_size=2), st.dictionaries(NAMES, NUMBERS, min_size=1, max_size=2))
    else:  # a section: anything but a mapping
        wrong = st.one_of(st.booleans(), NUMBERS, st.text(max_size=5), st.lists(NUMBERS, max_size=2))
    value = data.draw(wrong)
    with pytest.raises(ConfigError) as info:
        set_key(cfg, key, value)
    assert type(info.value) is ConfigError and repr(key) in str(info.value)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def deep_set(tree: dict, key: str, value) -> None:
    """tree["a"]["b"] = value for "a.b", creating the sections on the way."""
    *sections, leaf = key.split(".")
    for part in sections:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


@property_settings(max_examples=80)
@given(data=st.data(), cfg=DEFAULTS)
def test_a_yaml_recipe_sets_what_the_overrides_set(tmp_path, data, cfg):
    flat = leaves(cfg)
    assume(flat)
    keys = data.draw(st.lists(st.sampled_from(sorted(flat)), min_size=1, max_size=4, unique=True))
    values = {key: data.draw(typed_values(flat[key])) for key in keys}
    recipe = {}
    for key, value in values.items():
        deep_set(recipe, key, value)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    from_file = build_config(cfg, path)
    from_overrides = build_config(cfg, overrides=[f"{key}={dump(value)}" for key, value in values.items()])
    expected = copy.deepcopy(cfg)
    for key, value in values.items():
        deep_set(expected, key, converted(flat[key], value))
    assert from_file == from_overrides == expected


# ---------------------------------------------------------------------------------- bugs found
@property_settings(max_examples=400)
@given(text=OVERRIDE_TEXT)
@example(text="stage=2001-02-30")  # PyYAML's constructors raise ValueError, not YAMLError, here
def test_any_override_text_is_a_value_or_a_config_error(text):
    check_override_text(text)


@property_settings(max_examples=100)
@given(value=st.integers(), default=st.sampled_from([0.1, 3]))
@example(value=10**400, default=3)  # beyond the float range
def test_any_integer_for_a_number_key_is_a_value_or_a_config_error(value, default):
    try:
        out = build_config({"n": default}, overrides=[f"n={value}"])
    except ConfigError as err:
        assert "'n'" in str(err)
        return
    assert out["n"] == value


@property_settings(max_examples=50)
@given(data=st.data(), cfg=DEFAULTS)
@example(data=None, cfg={"optim": {"lr": 0.1, "momentum": 0.9}})
def test_a_section_set_to_null_keeps_its_keys_or_raises(data, cfg):
    sections = sorted(k for k in all_keys(cfg) if isinstance(get_key(cfg, k), dict))
    assume(sections)
    section = sections[0] if data is None else data.draw(st.sampled_from(sections))
    try:
        out = build_config(cfg, overrides=[f"{section}="])
    except ConfigError as err:
        assert repr(section) in str(err)
        return
    assert leaves(out) == leaves(cfg)
