"""The config schema: every key's type and range is stated, and nonsense values stop with one
message naming the key (engine.config.validate, the rules of engine.trainer / engine.stages)."""
from __future__ import annotations

import pytest

from engine.config import ConfigError, flat_keys, get_key, integer, list_of, number, one_of, validate
from engine.stages import STAGES, defaults, resolve_config, rules


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_value_key_has_a_rule(stage):
    """Numbers, lists, choices and optional values are all covered; booleans are typed by their default."""
    cfg, schema = defaults(stage), rules(stage)
    for key in schema:
        get_key(cfg, key)  # a rule for a key that does not exist would never be checked
    uncovered = [k for k in flat_keys(cfg) if k != "stage" and k not in schema
                 and not isinstance(get_key(cfg, k), (dict, bool))]
    assert uncovered == []
    assert validate(cfg, schema) == defaults(stage)  # the defaults obey their own schema


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "config key 'optim.lr' must be a number > 0, got -1.0"),
    ("optim.lr=0", "config key 'optim.lr' must be a number > 0, got 0.0"),
    ("train.iters=5.5", "config key 'train.iters' must be an integer >= 1 or null, got 5.5"),
    ("train.batch_size=0", "config key 'train.batch_size' must be an integer >= 1, got 0"),
    ("data.flip=1.5", "config key 'data.flip' must be a number in [0, 1], got 1.5"),
    ("data.crop=[256,0]", "config key 'data.crop[1]' must be an integer >= 1, got 0"),
    ("data.crop=[256]", "config key 'data.crop' must be a list of 2 values, each an integer >= 1 or null"),
    ("train.amp=fp32", "config key 'train.amp' must be one of none, bf16, fp16, got 'fp32'"),
    ("optim.betas=[0.9,1.5]", "config key 'optim.betas[1]' must be a number in [0, 1], got 1.5"),
    ("optim.lr=.nan", "config key 'optim.lr' must be a number > 0, got nan"),
    ("etc.motion_weight=-0.1", "config key 'etc.motion_weight' must be a number >= 0, got -0.1"),
])
def test_nonsense_values_name_their_key(override, message):
    with pytest.raises(ConfigError) as info:
        resolve_config("csrnet", None, [override])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_integral_values_are_normalised():
    cfg = resolve_config("csrnet", None, ["train.iters=5.0", "optim.lr=1e-3", "train.workers=0"])
    assert cfg["train"]["iters"] == 5 and type(cfg["train"]["iters"]) is int
    assert cfg["optim"]["lr"] == 0.001 and cfg["train"]["workers"] == 0


def test_stage_rules_apply_to_their_stage():
    with pytest.raises(ConfigError, match="'recurrent.window' must be an integer >= 2"):
        resolve_config("recurrent", None, ["recurrent.window=1"])
    with pytest.raises(ConfigError, match="'flow.mode' must be one of distill, photometric, both"):
        resolve_config("flownet", None, ["flow.mode=all"])
    with pytest.raises(ConfigError, match="'model.wf' must be a number in \\[0, 1\\]"):
        resolve_config("evss", None, ["model.wf=2", "model.allow_random_csrnet=true"])


def test_rules_in_words():
    assert integer(min=1, null=True).describe() == "an integer >= 1 or null"
    assert number(above=0.0).describe() == "a number > 0"
    assert number(0, 1).describe() == "a number in [0, 1]"
    assert one_of("a", "b").describe() == "one of a, b"
    assert list_of(integer(), length=2).describe() == "a list of 2 values, each an integer"
    assert integer().check("k", 3.0) == 3
    for bad in (True, "3", float("inf"), [3]):
        with pytest.raises(ConfigError, match="'k' must be an integer"):
            integer().check("k", bad)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("stage: csrnet\ntrain:\n  iters: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        resolve_config("csrnet", str(recipe))
    assert str(info.value).startswith(f"{recipe}: line ") and "not valid YAML" in str(info.value)
