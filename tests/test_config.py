import os

import pytest

from conftest import DEMO_CFG, ROOT, TINY_CFG, make_cfg
from e2mim_engine.errors import ConfigError
from e2mim_engine.registry import Registry
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.data import DATASET_REGISTRY


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_merge_order_defaults_dataset_method_flags_pairs(tmp_path):
    ds = write(tmp_path, "ds.yaml", "DATASET:\n  NAME: Demo\n  NUM_SHOTS: 2\nOPTIM:\n  LR: 0.1\n  MAX_EPOCH: 3\n")
    method = write(tmp_path, "m.yaml", "OPTIM:\n  LR: 0.2\nMODEL:\n  BACKBONE:\n    NAME: RN50\n")
    cfg = make_cfg("--dataset-config-file", ds, "--config-file", method, "--backbone", "ViT-B/16",
                   "--seed", 3, "OPTIM.LR", 0.3, "MODEL.BACKBONE.NAME", "ViT-B/32")
    assert cfg.DATASET.NUM_SHOTS == 2          # dataset yaml over defaults
    assert cfg.OPTIM.MAX_EPOCH == 3            # dataset yaml, untouched later
    assert cfg.OPTIM.LR == 0.3                 # trailing pair over method yaml over dataset yaml
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/32"  # trailing pair over --backbone over method yaml
    assert cfg.SEED == 3
    assert cfg.is_frozen()
    cfg2 = make_cfg("--dataset-config-file", ds, "--config-file", method, "--backbone", "ViT-B/16")
    assert cfg2.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg2.OPTIM.LR == 0.2


def test_negative_seed_keeps_config_seed(tmp_path):
    m = write(tmp_path, "m.yaml", "SEED: 7\n")
    assert make_cfg("--config-file", m, "--seed", -1).SEED == 7
    assert make_cfg("--config-file", m, "--seed", 0).SEED == 0


def test_coop_yaml_files_load_unchanged():
    cfg = make_cfg("--config-file", os.path.join(ROOT, "configs/trainers/CoOp/vit_b16_ep50.yaml"),
                   "--dataset-config-file", os.path.join(ROOT, "configs/datasets/caltech101.yaml"))
    assert cfg.OPTIM.MAX_EPOCH == 50 and cfg.INPUT.INTERPOLATION == "bicubic"
    assert cfg.DATASET.NAME == "Caltech101" and cfg.MODEL.BACKBONE.NAME == "ViT-B/16"
    assert cfg.TRAINER.COOP.N_CTX == 16 and cfg.TRAINER.COOP.PREC == "fp16"
    assert cfg.TRAINER.COOP.CLASS_TOKEN_POSITION == "end" and cfg.TRAINER.COOP.CSC is False


def test_unknown_key_in_file_names_key_and_closest(tmp_path):
    bad = write(tmp_path, "bad.yaml", "OPTIM:\n  MAX_EPOHC: 3\n")
    with pytest.raises(ConfigError) as e:
        make_cfg("--config-file", bad)
    msg = str(e.value)
    assert "Unknown config key OPTIM.MAX_EPOHC" in msg and "closest valid key is OPTIM.MAX_EPOCH." in msg
    assert bad in msg


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError) as e:
        make_cfg("TRAINER.COOP.N_CTXX", 4)
    assert "Unknown config key TRAINER.COOP.N_CTXX" in str(e.value)
    assert "closest valid key is TRAINER.COOP.N_CTX." in str(e.value)


def test_odd_trailing_pairs_and_missing_file():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        make_cfg("OPTIM.LR")
    with pytest.raises(ConfigError, match="does not exist"):
        make_cfg("--config-file", "/nonexistent/x.yaml")


def test_registry_errors_list_valid_names():
    with pytest.raises(ConfigError) as e:
        TRAINER_REGISTRY.get("CoOq")
    msg = str(e.value)
    assert "Unknown trainer 'CoOq'" in msg and "Did you mean 'CoOp'" in msg
    for name in ("CoOp", "ZeroshotCLIP", "ZeroshotCLIP2"):
        assert name in msg
    with pytest.raises(ConfigError) as e:
        DATASET_REGISTRY.get("caltech")
    assert "Caltech101" in str(e.value) and "Demo" in str(e.value)
    reg = Registry("thing")
    reg.register(int, name="a")
    with pytest.raises(KeyError):
        reg.register(float, name="a")


def test_each_trainer_declares_its_own_node():
    cfg = make_cfg()
    assert "COOP" in cfg.TRAINER and "ZSCLIP" in cfg.TRAINER
    assert TINY_CFG and DEMO_CFG


def test_integer_accepted_for_float_key(tmp_path):
    m = write(tmp_path, "m.yaml", "OPTIM:\n  LR: 1\n")
    cfg = make_cfg("--config-file", m, "OPTIM.WEIGHT_DECAY", 0, "OPTIM.MOMENTUM", "1")
    assert cfg.OPTIM.LR == 1.0 and isinstance(cfg.OPTIM.LR, float)
    assert isinstance(cfg.OPTIM.WEIGHT_DECAY, float) and cfg.OPTIM.MOMENTUM == 1.0
    with pytest.raises(ConfigError, match="Bad value|mismatch"):
        make_cfg("OPTIM.LR", "fast")
