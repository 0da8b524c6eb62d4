"""Typed YAML configuration: loading, errors that name the field, --set overrides."""

from __future__ import annotations

import json

import pytest

from texlens.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
)


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file():
    assert load_config() == Config()
    assert load_config(None, []) == Config()


def test_yaml_loading(tmp_path):
    path = write(tmp_path, """
name: small
model:
  d_model: 64
  ffn: conv
data:
  train: [a, b]
  val: [c]
  height: 48
  vocab: dict.txt
  augment:
    enabled: false
    scale: [0.8, 1.2]
train:
  lr: 0.002
  max_steps: 10
  betas: [0.9, 0.95]
""")
    cfg = load_config(path)
    assert cfg.name == "small"
    assert cfg.model.d_model == 64 and cfg.model.ffn == "conv"
    assert cfg.model.n_heads == Config().model.n_heads  # untouched keys keep defaults
    assert cfg.data.train == ["a", "b"] and cfg.data.val == ["c"]
    assert cfg.data.height == 48 and cfg.data.vocab == "dict.txt"
    assert cfg.data.augment.enabled is False
    assert cfg.data.augment.scale == (0.8, 1.2) and isinstance(cfg.data.augment.scale, tuple)
    assert cfg.train.lr == 0.002 and cfg.train.max_steps == 10
    assert cfg.train.betas == (0.9, 0.95) and isinstance(cfg.train.betas, tuple)


def test_empty_file_and_empty_sections(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "model:\ntrain:\n")) == Config()


def test_ints_are_accepted_for_floats(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lr: 1\n  betas: [1, 0]\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.betas == (1.0, 0.0) and all(isinstance(b, float) for b in cfg.train.betas)


def test_exponent_floats_without_a_dot(tmp_path):
    # PyYAML reads 3e-4 (no dot) as a string; it is still a float to a float field.
    cfg = load_config(write(tmp_path, "train:\n  lr: 3e-4\n  weight_decay: 1E-2\n"))
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.weight_decay == pytest.approx(0.01)
    assert load_config(None, ["train.lr=5e-4"]).train.lr == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(None, ["train.lr=e-4"])


@pytest.mark.parametrize(("text", "key"), [
    ("train:\n  lrr: 0.1\n", "train.lrr"),
    ("model:\n  dmodel: 3\n", "model.dmodel"),
    ("data:\n  augment:\n    rotate: 3\n", "data.augment.rotate"),
    ("trian:\n  lr: 0.1\n", "trian"),
])
def test_unknown_key_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(write(tmp_path, text))


def test_unknown_key_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "train:\n  lrr: 0.1\n"))
    assert "lr" in str(info.value).split("known:")[1]


@pytest.mark.parametrize(("text", "field", "expected"), [
    ("train:\n  lr: fast\n", "train.lr", "float"),
    ("train:\n  max_steps: 1.5\n", "train.max_steps", "int"),
    ("train:\n  max_steps: true\n", "train.max_steps", "int"),
    ("data:\n  augment:\n    enabled: 3\n", "data.augment.enabled", "bool"),
    ("model:\n  ffn: 3\n", "model.ffn", "str"),
    ("data:\n  train: some/dir\n", "data.train", "list"),
    ("data:\n  train: [a, 3]\n", r"data.train\[1\]", "str"),
    ("train:\n  betas: [0.9]\n", "train.betas", "2 values"),
    ("train:\n  betas: [0.9, x]\n", r"train.betas\[1\]", "float"),
    ("model: 5\n", "model", "mapping"),
])
def test_wrong_type_names_the_field(tmp_path, text, field, expected):
    with pytest.raises(ConfigError, match=f"{field}: expected .*{expected}"):
        load_config(write(tmp_path, text))


def test_unreadable_configs(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_set_overrides_with_dotted_keys_and_typed_values(tmp_path):
    path = write(tmp_path, "train:\n  lr: 0.1\n  max_steps: 5\ndata:\n  train: [a]\n")
    cfg = load_config(path, [
        "train.lr=0.25",
        "train.max_steps=7",
        "data.augment.enabled=false",
        "data.train=[x, y]",
        "data.vocab=null",
        "train.betas=[0.8, 0.9]",
        "model.d_model=96",
        "name=exp 1",
        "train.precision=bf16-mixed",
    ])
    assert cfg.train.lr == 0.25 and cfg.train.max_steps == 7
    assert cfg.data.augment.enabled is False
    assert cfg.data.train == ["x", "y"] and cfg.data.vocab is None
    assert cfg.train.betas == (0.8, 0.9)
    assert cfg.model.d_model == 96
    assert cfg.name == "exp 1"
    assert cfg.train.precision == "bf16-mixed"


def test_set_later_overrides_win_and_empty_sections_work(tmp_path):
    path = write(tmp_path, "train:\n")
    cfg = load_config(path, ["train.lr=0.1", "train.lr=0.2"])
    assert cfg.train.lr == 0.2


def test_set_errors_name_the_key():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["=3"])
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=0.1"])
    with pytest.raises(ConfigError, match="train.lr: expected float, got 'fast'"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(None, ["train.lr=0.1", "train.lr.x=1"])


def test_dict_round_trip():
    cfg = load_config(None, ["model.d_model=64", "data.augment.scale=[0.5, 2]"])
    data = config_to_dict(cfg)
    assert data["model"]["d_model"] == 64
    assert config_from_dict(data) == cfg
    # Through JSON too, as checkpoints store it: tuples become lists and come back as tuples.
    again = config_from_dict(json.loads(json.dumps(data)))
    assert again == cfg and isinstance(again.data.augment.scale, tuple)

