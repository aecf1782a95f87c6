"""The tiny CLIP as an explicit, reproducible build step, and the loader's word on it."""
import json
import os
import subprocess
import sys
import pytest
import torch

from e2mim_clip import loader
from e2mim_clip.loader import LOCAL_BACKBONES, build_random_clip, weights_sha256
from e2mim_engine.errors import WeightsError
from e2mim_tools import tiny_clip

SMOKE = dict(steps=2, pool=1, batch_size=16, vision_layers=1, text_layers=1, eval_per_class=1)


def _build(tmp_path, monkeypatch, name, env=None):
    monkeypatch.setitem(tiny_clip.RECIPES, name, dict(seed=0, **SMOKE))
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    logs = []
    path = tiny_clip.build(name, force=True, log=logs.append, cache_dir=str(tmp_path))
    return path, logs


def test_build_is_the_same_whatever_the_callers_numerics(tmp_path, monkeypatch):
    """The build pins the child's numerics, so a caller's thread count and instruction-set
    settings (what differs between machines) do not reach the weights."""
    path, logs = _build(tmp_path, monkeypatch, "compworld-tiny")
    first = loader.weights_file_sha256(path)
    assert any("not comparable" in m for m in logs)   # a smoke config is not the documented build
    path2, _ = _build(tmp_path, monkeypatch, "compworld-tiny",
                      env={"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO"})
    assert path2 == path
    assert loader.weights_file_sha256(path) == first
    side = json.loads(open(os.path.splitext(path)[0] + ".json").read())
    assert side["weights_sha256"] == first == weights_sha256(torch.load(path, weights_only=True))


def test_unpinned_numerics_do_change_the_weights(tmp_path):
    """Why the pins exist: the same pretraining with another ATen kernel level gives other bits."""
    sums = []
    for cap in ("avx2", "default"):
        out = tmp_path / f"{cap}.pt"
        env = dict(os.environ, **dict(tiny_clip.DETERMINISTIC_ENV, ATEN_CPU_CAPABILITY=cap))
        cmd = [sys.executable, "-m", "e2mim_tools.tiny_clip", "pretrain", "--no-eval", "--out", str(out),
               "--threads", "2"] + [f"--{k.replace('_', '-')}={v}" for k, v in SMOKE.items() if k != "eval_per_class"]
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)  # a loaded machine is slow, not hung
        sums.append(weights_sha256(torch.load(str(out), weights_only=True)))
    if sums[0] == sums[1]:
        pytest.skip("this CPU's AVX2 and scalar kernels happen to agree on this tiny config")
    assert sums[0] != sums[1]


def test_unknown_backbone_name_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown backbone 'nope'; valid: compworld-tiny"):
        tiny_clip.build("nope")


def test_missing_local_backbone_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("E2MIM_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as e:
        loader.load_clip("compworld-tiny", "cpu")
    msg = str(e.value)
    assert "e2mim-tiny-clip build compworld-tiny" in msg and str(tmp_path) in msg
    assert not os.listdir(tmp_path)   # nothing was trained or written


def _fake_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("E2MIM_CACHE_DIR", str(tmp_path))
    sd = build_random_clip("tiny").state_dict()
    path = tmp_path / LOCAL_BACKBONES["compworld-tiny"].file
    torch.save(sd, str(path))
    return path, weights_sha256(sd)


def test_a_build_that_is_not_the_documented_one_is_said(tmp_path, monkeypatch, caplog):
    path, sha = _fake_tiny(tmp_path, monkeypatch)
    with caplog.at_level("WARNING"):
        loader.load_clip("compworld-tiny", "cpu")
    assert "results not comparable with the documented tables" in caplog.text
    report = loader.backbone_report("compworld-tiny")
    assert report == {"backbone_sha256": sha, "backbone_documented_sha256": LOCAL_BACKBONES["compworld-tiny"].sha256,
                      "backbone_comparable": False}
    monkeypatch.setitem(LOCAL_BACKBONES, "compworld-tiny", LOCAL_BACKBONES["compworld-tiny"]._replace(sha256=sha))
    caplog.clear()
    with caplog.at_level("WARNING"):
        loader.load_clip("compworld-tiny", "cpu")
    assert "not comparable" not in caplog.text
    assert loader.backbone_report("compworld-tiny")["backbone_comparable"] is True


def test_results_json_says_whether_the_backbone_is_comparable(tmp_path, monkeypatch, demo_root):
    from conftest import demo_args, make_cfg
    from e2mim_engine.trainer import build_trainer
    _, sha = _fake_tiny(tmp_path, monkeypatch)
    out = tmp_path / "out"
    t = build_trainer(make_cfg(*demo_args(demo_root, str(out), "MODEL.BACKBONE.NAME", "compworld-tiny",
                                          trainer="ZeroshotCLIP")))
    t.test()
    res = json.loads((out / "results.json").read_text())
    assert res["backbone_sha256"] == sha and res["backbone_comparable"] is False
    assert res["backbone_documented_sha256"] == LOCAL_BACKBONES["compworld-tiny"].sha256


def test_resolving_a_backbone_imports_no_dataset_and_trains_nothing(tmp_path):
    code = ("import sys; from e2mim_clip import loader; "
            "print(loader.local_backbone_path('compworld-tiny')); "
            "loader.backbone_checksum('random:tiny'); "
            "bad = [m for m in sys.modules if m.startswith(('e2mim_datasets', 'e2mim_tools', 'e2mim_trainers'))]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, E2MIM_CACHE_DIR=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / LOCAL_BACKBONES["compworld-tiny"].file)


def test_prefix_noise_puts_random_words_between_start_token_and_caption():
    import numpy as np
    sot, eot = tiny_clip.FIRST_SPECIAL_TOKEN, tiny_clip.FIRST_SPECIAL_TOKEN + 1
    tokens = torch.tensor([[sot, 320, 736, 7117, eot, 0], [sot, 320, 1746, 269, 12, eot]])
    rng = np.random.default_rng(5)
    assert tiny_clip.add_prefix_noise(tokens, rng, 0.0, 16) is tokens
    assert rng.bit_generator.state == np.random.default_rng(5).bit_generator.state  # nothing drawn at p = 0
    # the same draws by hand: which rows, how many words, which words
    ref = np.random.default_rng(18)  # the first row gets 3 words, the second none
    use = ref.random(2) < 0.5
    k = np.where(use, ref.integers(1, 4, size=2), 0)
    words = ref.integers(1, sot, size=(2, 3))
    out = tiny_clip.add_prefix_noise(tokens, np.random.default_rng(18), 0.5, 3)
    assert k.tolist() == [3, 0] and out.shape == (2, 9)
    for i in range(2):
        row = out[i].tolist()
        assert row[0] == sot and row[1:1 + k[i]] == words[i, :k[i]].tolist()
        assert row[1 + k[i]:6 + k[i]] == tokens[i, 1:].tolist() and not any(row[6 + k[i]:])
        assert int(out[i].argmax()) == int(tokens[i].argmax()) + k[i]  # the end token is still read
    out = tiny_clip.add_prefix_noise(tokens, np.random.default_rng(7), 1.0, 3)
    assert (out[:, 1] < sot).all() and (out[:, 1] > 0).all()  # every row got at least one ordinary token


def test_position_shift_reads_the_caption_further_back_and_draws_nothing_when_off():
    import copy
    import numpy as np
    torch.manual_seed(0)
    model = tiny_clip.build_model(dict(tiny_clip.DEFAULTS)).float().eval()
    with torch.no_grad():
        model.positional_embedding.normal_(0, 0.5)  # positions that matter, unlike CLIP's 0.01 init
    sot, eot = tiny_clip.FIRST_SPECIAL_TOKEN, tiny_clip.FIRST_SPECIAL_TOKEN + 1
    tokens = torch.tensor([[sot, 320, 736, 7117, eot, 0], [sot, 320, 1746, 269, 12, eot]])
    rng = np.random.default_rng(5)
    assert tiny_clip.draw_position_shift(2, rng, 0.0, 16) is None
    assert rng.bit_generator.state == np.random.default_rng(5).bit_generator.state
    ref = np.random.default_rng(3)
    k = np.where(ref.random(2) < 0.5, ref.integers(1, 17, size=2), 0)
    assert (tiny_clip.draw_position_shift(2, np.random.default_rng(3), 0.5, 16) == k).all()
    with torch.no_grad():
        full = model.encode_text(torch.nn.functional.pad(tokens, (0, tiny_clip.CONTEXT_LENGTH - tokens.shape[1])))
        assert torch.allclose(tiny_clip.encode_text_prefix(model, tokens), full, atol=1e-5)
        assert torch.allclose(tiny_clip.encode_text_prefix(model, tokens, np.array([0, 0])), full, atol=1e-5)
        got = tiny_clip.encode_text_prefix(model, tokens, np.array([3, 0]))
        assert torch.allclose(got[1], full[1], atol=1e-5)
        # by hand: row 0 through a copy whose positions 1.. are the original's 4..
        moved = copy.deepcopy(model)
        pe = model.positional_embedding
        moved.positional_embedding.data = torch.cat([pe[:1], pe[4:], pe[:3]])
        want = moved.encode_text(torch.nn.functional.pad(tokens[:1], (0, tiny_clip.CONTEXT_LENGTH - tokens.shape[1])))[0]
        assert torch.allclose(got[0], want, atol=1e-5) and not torch.allclose(got[0], full[0], atol=1e-2)


def test_a_shift_past_the_text_context_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="past the text tower's 77"):
        tiny_clip.pretrain(out=str(tmp_path / "x.pt"), steps=1, pool=1, position_shift=0.5, prefix_max=70,
                           evaluate=False, log=lambda m: None)
    assert not list(tmp_path.iterdir())
