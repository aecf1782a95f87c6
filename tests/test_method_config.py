"""A method's keys declared once as a frozen view: the node's defaults come from the
declaration, parsing checks and lower-cases once, and results.json records every method
setting ("hyperparameters"), E2MIM's MI_WEIGHT as KgCoOp's W."""
import dataclasses
import json
import os

import pytest

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_engine.errors import ConfigError
from e2mim_engine.method_config import AT_LEAST_0, config_node, option, parse_view, view_items
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer
from e2mim_trainers import mi_estimators
from e2mim_trainers.e2mim import E2MIMConfig


@dataclasses.dataclass(frozen=True)
class View:
    mode: str = option("fast", choices=("fast", "slow"))
    weight: float = option(1.0, check=AT_LEAST_0)
    on: bool = option(True)


def test_node_parse_and_errors():
    node = config_node(View)
    assert dict(node) == {"MODE": "fast", "WEIGHT": 1.0, "ON": True}
    node.MODE, node.WEIGHT = " SLOW", 2
    v = parse_view(View, node, "TRAINER.X")
    assert (v.mode, v.weight, v.on) == ("slow", 2, True)
    assert view_items(v, "TRAINER.X") == {"TRAINER.X.MODE": "slow", "TRAINER.X.WEIGHT": 2, "TRAINER.X.ON": True}
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.weight = 3.0
    node.MODE = "medium"
    with pytest.raises(ConfigError, match=r"^Unknown TRAINER\.X\.MODE='medium'; valid: fast, slow\.$"):
        parse_view(View, node, "TRAINER.X")
    node.MODE, node.WEIGHT = "fast", -1
    with pytest.raises(ConfigError, match=r"^TRAINER\.X\.WEIGHT must be >= 0; got -1\.$"):
        parse_view(View, node, "TRAINER.X")
    node.WEIGHT = "heavy"  # a value the check cannot even compare is an error too, not a TypeError
    with pytest.raises(ConfigError, match="WEIGHT must be >= 0"):
        parse_view(View, node, "TRAINER.X")


def test_e2mim_defaults_are_declared_once_the_estimators_with_the_estimator():
    cfg = make_cfg("--trainer", "E2MIM")
    c = cfg.TRAINER.E2MIM
    fields = {f.name: f for f in dataclasses.fields(E2MIMConfig)}
    # the node holds CoOp's context keys plus exactly the view's keys, with its defaults
    assert set(c) == {"N_CTX", "CSC", "CTX_INIT", "PREC", "CLASS_TOKEN_POSITION"} | {k.upper() for k in fields}
    assert all(c[k.upper()] == f.default for k, f in fields.items())
    assert (c.MI_ESTIMATOR, c.MI_HIDDEN, c.MI_LAYERS, c.MI_MARGINAL) == (
        mi_estimators.DEFAULT_ESTIMATOR, mi_estimators.DEFAULT_HIDDEN, mi_estimators.DEFAULT_LAYERS,
        mi_estimators.DEFAULT_MARGINAL)
    assert fields["mi_estimator"].metadata["choices"] == tuple(sorted(mi_estimators.MI_ESTIMATORS))
    assert fields["mi_marginal"].metadata["choices"] == mi_estimators.MARGINAL_MODES
    # which options each estimator takes is the estimator module's fact
    assert mi_estimators.estimator_options("infonce", marginal="all", bias_correction=True) == {}
    assert mi_estimators.estimator_options("DV", marginal="all", bias_correction=True) == {
        "marginal": "all", "bias_correction": True}


def _results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("trainer,pair", [("E2MIM", ("TRAINER.E2MIM.MI_WEIGHT", 2.5)),
                                          ("KgCoOp", ("TRAINER.KGCOOP.W", 3.0)),
                                          ("ProGrad", ("LOSS.LAMBDA", 0.5))])
def test_results_record_every_method_setting(demo_root, tmp_path, trainer, pair):
    extra = ["OPTIM.MAX_EPOCH", 1, *pair]
    if trainer == "E2MIM":
        extra += ["TRAINER.E2MIM.MI_HIDDEN", 16, "TRAINER.E2MIM.MIX_LEVEL", "IMAGE"]
    args = ["--root", demo_root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
            "--config-file", os.path.join(ROOT, "configs", "trainers", trainer, "demo_tiny.yaml"),
            "--output-dir", str(tmp_path), "DATASET.NUM_SHOTS", 2, "VERBOSE", False, *extra]
    cfg = make_cfg(*args)
    set_random_seed(1)
    t = build_trainer(cfg)
    t.test()
    hp = _results(str(tmp_path))["hyperparameters"]
    assert hp[pair[0]] == pair[1]
    node = f"TRAINER.{t.node}"
    assert set(hp) >= {f"{node}.{k}" for k in t.cfg_node()}
    if trainer == "E2MIM":
        assert hp["TRAINER.E2MIM.MIX_LEVEL"] == "image"  # the parsed value, as the run used it
        assert hp["TRAINER.E2MIM.MI_ESTIMATOR"] == "jsd" and hp["TRAINER.E2MIM.MI_HIDDEN"] == 16


@pytest.mark.parametrize("trainer,pair,message", [
    ("ZeroshotCLIP", ("TRAINER.ZSCLIP.TEMPLATE_SET", "nope"), "Unknown TRAINER.ZSCLIP.TEMPLATE_SET='nope'; valid: coop"),
    ("CoCoOp", ("TRAINER.COCOOP.PROMPTS_PER_CALL", -1), "TRAINER.COCOOP.PROMPTS_PER_CALL must be an integer >= 0"),
    ("PromptSRC", ("TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT", -1), "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT must be >= 0"),
    ("ProGrad", ("LOSS.T", 0.0), "LOSS.T (the temperature of the zero-shot direction) must be > 0; got 0.0."),
    ("ProGrad", ("LOSS.LAMBDA", -1.0), "LOSS.LAMBDA must be >= 0"),
    ("KgCoOp", ("TRAINER.KGCOOP.W", -1.0), "TRAINER.KGCOOP.W must be >= 0; got -1.0."),
    ("E2MIM", ("TRAINER.E2MIM.DIAG_FREQ", -1), "TRAINER.E2MIM.DIAG_FREQ must be an integer >= 0"),
])
def test_each_method_checks_its_keys_at_start_up(tmp_path, trainer, pair, message):
    # before any data is read (the root does not exist)
    cfg = make_cfg("--root", str(tmp_path / "nodata"), "--trainer", trainer, "--output-dir", str(tmp_path), *pair)
    with pytest.raises(ConfigError) as info:
        build_trainer(cfg)
    assert message in str(info.value)
