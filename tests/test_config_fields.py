"""Each config field is declared once (krd_jax.config.fields): the default config, the
validation and docs/config.md all come from that declaration."""

import os

import pytest

from krd_jax import checks
from krd_jax import config as config_lib
from krd_jax import validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_config_holds_every_declared_default():
  cfg = config_lib.default_config()
  for key, field in config_lib.fields().items():
    value = config_lib.lookup(cfg, key)
    if isinstance(field.default, dict):
      assert value.to_dict() == field.default, key
    else:
      assert value == field.default and type(value) is type(field.default), key
    assert field.accepts(value), key  # every default is allowed
    assert field.doc, f"{key} has no meaning written down"


@pytest.mark.parametrize("key, bad, allowed", [
    ("data.imbalance", 0.5, "a number >= 1"),
    ("data.streaming", 1, "True or False"),
    ("data.group_split", "deciles", "one of absolute, tercile"),
    ("student.optim.momentum", 1.0, "a number >= 0 and < 1"),
    ("teacher.loss", "focal", "one of balanced_softmax, cb_ce, ce, ldam, logit_adjusted"),
    ("workdir", "", "a non-empty string"),
    ("distributed.cpu_collectives", "nccl", "one of gloo, mpi"),
    ("keep_checkpoints", 0, "an integer >= 1"),
])
def test_validation_asks_the_declaration(key, bad, allowed):
  cfg = config_lib.default_config().unlock()
  *parents, leaf = key.split(".")
  node = cfg
  for part in parents:
    node = node[part]
  with node.ignore_type():
    node[leaf] = bad
  with pytest.raises(checks.InputError) as error:
    validate.check_config(cfg, "demo")
  assert str(error.value) == f"config.{key}={bad!r} is not allowed; allowed: {allowed}"


def test_every_method_knob_says_what_it_means():
  from krd_jax import methods
  for name in methods.names():
    for knob, param in methods.get(name).params.items():
      assert param.doc, f"methods.{name}.{knob} has no meaning written down"


def test_docs_list_every_field_as_declared():
  with open(os.path.join(REPO, "docs", "config.md")) as f:
    assert f.read().rstrip("\n") == config_lib.fields_markdown().rstrip("\n"), (
        "docs/config.md is stale: python -m krd_jax.config > docs/config.md")
