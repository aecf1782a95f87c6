"""The E2MIM study's instruments: diagnostics (MI estimate against its independent-views
value, the collapse metric, gradient shares, per-epoch rows in results.json and across a
resume), the reading switches (critic input, temperature, warm-up, independent marginals),
TEST.REPORT_VAL, and the shifted CompWorld camera."""
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import e2mim_trainers.e2mim as e2mim_module
from e2mim_clip.prompting import mean_pairwise_cosine
from e2mim_trainers.mi_estimators import build_mi_estimator
from test_e2mim import build, first_batch

LOG4 = 2 * math.log(2)


# ---- the collapse metric -------------------------------------------------------------

def test_mean_pairwise_cosine_hand_computed():
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])  # norms do not matter
    # pairs: (0,1) 0, (0,2) 1/sqrt2, (1,2) 1/sqrt2; each ordered pair twice over 6
    assert mean_pairwise_cosine(f) == pytest.approx(2 * (0 + 2 / math.sqrt(2)) / 6, abs=1e-6)
    assert mean_pairwise_cosine(torch.ones(4, 3)) == pytest.approx(1.0, abs=1e-6)  # full collapse
    with pytest.raises(ValueError, match="two classes"):
        mean_pairwise_cosine(torch.ones(1, 3))


# ---- the MI estimate against independent views ----------------------------------------

def _views(n, gen, dependent):
    z = torch.randn(n, 6, generator=gen)
    other = z if dependent else torch.randn(n, 6, generator=gen)
    a = F.log_softmax(2 * z, dim=-1)
    b = F.log_softmax(2 * (other + 0.3 * torch.randn(n, 6, generator=gen)), dim=-1)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trained_critic_separates_dependent_views_from_independent(seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    est = build_mi_estimator("jsd", 6, hidden=32)
    opt = torch.optim.Adam(est.parameters(), lr=1e-2)
    for _ in range(200):
        a, b = _views(64, gen, dependent=True)
        loss = -est(a, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        a, b = _views(256, gen, dependent=True)
        joint, indep = float(est(a, b)), float(est(a, b.roll(1, dims=0)))
        a2, b2 = _views(256, gen, dependent=False)
        unrelated = float(est(a2, b2))
    # JSD's value at independence is at most -2 log 2 (equality for a critic that is 0).
    assert indep <= -LOG4 + 0.05 and unrelated <= -LOG4 + 0.05
    assert joint > indep + 0.3


def test_excluded_pairs_leave_the_marginal_term():
    torch.manual_seed(0)
    est = build_mi_estimator("jsd", 4, hidden=8)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    exclude = torch.zeros(5, 5, dtype=torch.bool)
    exclude[0, 3] = exclude[3, 0] = exclude[1, 2] = True
    s = est.critic.score_matrix(a, b)
    keep = ~torch.eye(5, dtype=torch.bool) & ~exclude
    expected = (-F.softplus(-s.diagonal())).mean() - F.softplus(s[keep]).mean()
    torch.testing.assert_close(est(a, b, exclude=exclude), expected)
    nce = build_mi_estimator("infonce", 4, hidden=8)
    s = nce.critic.score_matrix(a, b)
    cand = ~exclude
    rows = [s[i, i] - torch.logsumexp(s[i][cand[i]], 0) + torch.log(cand[i].sum().float()) for i in range(5)]
    torch.testing.assert_close(nce(a, b, exclude=exclude), torch.stack(rows).mean())
    with pytest.raises(ValueError, match="every marginal pair"):
        est(a[:2], b[:2], exclude=torch.ones(2, 2, dtype=torch.bool))


def test_dependent_pairs_of_a_mixup_batch():
    # B = 4 clean rows [items 5, 7, 5, 9] (item 5 drawn twice), m = 2 mixtures: row 4 = (5, 5)'s
    # positions 0 and 2 -> items {5}, row 5 = positions 1 and 3 -> items {7, 9}.
    dep = e2mim_module.E2MIM._dependent_pairs(torch.tensor([5, 7, 5, 9]), 4, 6)
    expected = {(0, 2), (0, 4), (2, 4), (1, 5), (3, 5)}
    got = {(i, j) for i in range(6) for j in range(6) if dep[i, j] and i < j}
    assert got == expected and torch.equal(dep, dep.t()) and not dep.diagonal().any()


# ---- the trainer's diagnostics and switches --------------------------------------------

def _results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def test_diagnostics_rows_in_results_and_across_resume(demo_root, tmp_path):
    full = str(tmp_path / "full")
    soft_ce = ("TRAINER.E2MIM.MIX_WEIGHT", 1.0)  # so all three terms act
    t = build(demo_root, full, "OPTIM.MAX_EPOCH", 2, "TRAINER.E2MIM.DIAG_FREQ", 1, *soft_ce)
    t.train()
    rows = _results(full)["diagnostics"]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"class_cos", "view_cos", "handcrafted_class_cos", "mi", "mi_indep", "loss_mix",
                "grad_share_ce", "grad_share_mix", "grad_share_mi", "grad_cos_mi_ce"} <= set(r)
        assert r["grad_share_ce"] + r["grad_share_mix"] + r["grad_share_mi"] == pytest.approx(1.0)
        assert -1.0 <= r["class_cos"] <= 1.0 and -1.0 <= r["view_cos"] <= 1.0
    # The collapse metric is the pairwise cosine of the final prompt's class features.
    with torch.no_grad():
        assert rows[-1]["class_cos"] == pytest.approx(mean_pairwise_cosine(t.model.text_features()), abs=1e-6)
    assert os.listdir(os.path.join(full, "tensorboard"))
    # Interrupted after epoch 1 and resumed: the same rows.
    part = str(tmp_path / "part")
    build(demo_root, part, "OPTIM.MAX_EPOCH", 2, "TRAINER.E2MIM.DIAG_FREQ", 1, *soft_ce).train(max_epoch=1)
    build(demo_root, part, "OPTIM.MAX_EPOCH", 2, "TRAINER.E2MIM.DIAG_FREQ", 1, *soft_ce).train()
    resumed = _results(part)["diagnostics"]
    assert [r["epoch"] for r in resumed] == [1, 2]
    for a, b in zip(rows, resumed):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_diag_freq_zero_skips_the_gradient_shares(demo_root, tmp_path):
    t = build(demo_root, str(tmp_path), "TRAINER.E2MIM.DIAG_FREQ", 0)
    t.forward_backward(first_batch(t))
    assert not any(k.startswith("grad_") for k in t._diag) and t._diag["mi"]


@pytest.mark.parametrize("extra,kind", [(("TRAINER.E2MIM.MI_INPUT", "prob"), "prob"), ((), "log_prob"),
                                        (("TRAINER.E2MIM.MI_INPUT", "prob", "TRAINER.E2MIM.MI_TEMPERATURE", 2.0),
                                         "prob_t2")])
def test_what_the_critic_sees(demo_root, tmp_path, extra, kind):
    t = build(demo_root, str(tmp_path), "TRAINER.E2MIM.MIXUP", False, *extra)
    seen = []
    orig = t.critic.forward

    def spy(a, b, generator=None, exclude=None):
        seen.append((a.detach(), b.detach()))
        return orig(a, b, generator, exclude)

    t.critic.forward = spy
    batch = first_batch(t)
    t.forward_backward(batch)
    image, _ = t.parse_batch_train(batch)
    with torch.no_grad():
        v = e2mim_module.encode_images(t.model.clip, image)
        z_h = t.model.logit_scale * v @ t.text_h.t()
    a = seen[-1][0]
    expected = {"prob": z_h.softmax(-1), "log_prob": z_h.log_softmax(-1), "prob_t2": (z_h / 2).softmax(-1)}[kind]
    torch.testing.assert_close(a, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("warmup", [False, True])
def test_critic_warmup_switch(demo_root, tmp_path, warmup):
    t = build(demo_root, str(tmp_path), "TRAINER.E2MIM.MI_WARMUP", warmup, "OPTIM.WARMUP_EPOCH", 1,
              "OPTIM.MAX_EPOCH", 3, "TRAINER.E2MIM.MI_LR", 1e-3)
    lr_critic = t._optims["mi_estimator"].param_groups[0]["lr"]
    lr_prompt = t._optims["prompt_learner"].param_groups[0]["lr"]
    assert lr_prompt == pytest.approx(t.cfg.OPTIM.WARMUP_CONS_LR)
    assert lr_critic == pytest.approx(t.cfg.OPTIM.WARMUP_CONS_LR if warmup else 1e-3)


def test_independent_marginals_switch_changes_the_bound(demo_root, tmp_path):
    values = {}
    for flag in (True, False):
        t = build(demo_root, str(tmp_path / str(flag)), "TRAINER.E2MIM.MI_INDEPENDENT_MARGINALS", flag)
        values[flag] = t.forward_backward(first_batch(t))["mi"]
    assert values[True] != values[False]  # the mixtures' own sources leave the marginal pairs


def test_report_val_writes_the_validation_accuracy(demo_root, tmp_path):
    out = str(tmp_path)
    t = build(demo_root, out, "TEST.REPORT_VAL", True, "TRAINER.E2MIM.DIAG_FREQ", 0)
    t.train()
    res = _results(out)
    assert res["split"] == "test" and 0.0 <= res["val_accuracy"] <= 100.0
    assert res["val_accuracy"] == pytest.approx(t.test(split="val"))


# ---- the shifted camera ---------------------------------------------------------------

def test_identity_domain_renders_todays_images():
    from e2mim_datasets.compworld import render as cw
    combo = ("red", "star", "large", "dotted")
    a = np.asarray(cw.render(combo, 3, 48, seed=7))
    b = np.asarray(cw.render(combo, 3, 48, seed=7, domain=cw.Domain()))
    assert np.array_equal(a, b)


def test_class_hue_shifts_each_class_by_its_own_offset():
    import colorsys

    from e2mim_datasets.compworld import render as cw
    offsets = {c: cw.class_hue_offset(c, 18.0) for c in cw.all_classes()}
    assert set(offsets.values()) == {18.0, -18.0}
    for colour, shape in [("green", "square"), ("blue", "circle"), ("purple", "square")]:
        hues = []
        for dom in (cw.Domain(), cw.Domain(class_hue=18.0)):
            px = np.asarray(cw.render((colour, shape, "large", "plain"), 0, 64, 0, dom), np.float32) / 255
            centre = px[24:40, 24:40].reshape(-1, 3)
            sat = centre.max(1) - centre.min(1)
            obj = centre[sat > 0.3].mean(0)  # object pixels: saturated, unlike the grey background
            hues.append(colorsys.rgb_to_hsv(*obj)[0] * 360)
        shift = (hues[1] - hues[0] + 180) % 360 - 180
        assert shift == pytest.approx(offsets[(colour, shape)], abs=4.0)


def test_demo_runs_each_method_with_its_world_recipe(tmp_path, monkeypatch, capsys):
    """The demo's commands: every row's cfg exists for every world, the backbone is prepared
    in the foreground first, each base run's model feeds its new-class run, the runs land in the
    protocols' output tree, and the table names its seeds and the backbone's checksum."""
    from e2mim_clip.loader import LOCAL_BACKBONES
    from e2mim_tools import demo
    from e2mim_tools.results import find_runs

    calls, prepared = [], []
    monkeypatch.setattr(demo, "prepare_backbone",
                        lambda name: prepared.append(name) or LOCAL_BACKBONES[name].sha256)

    def fake_train(args, log, label="", t0=None):
        calls.append(args)
        out = args[args.index("--output-dir") + 1]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump({"accuracy": 50.0, "epoch": 20}, f)

    monkeypatch.setattr(demo, "train_py", fake_train)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for world in demo.WORLDS:
        calls.clear()
        demo.main(["--world", world, "--output", str(tmp_path / world), "--with-ablations"])
        out = capsys.readouterr().out
        assert "seed 1;" in out and "one seed, so no std" in out
        # the bench's world runs on the bench's tiny CLIP, the earlier worlds on theirs
        want = "compworld-tiny-deep" if world == "compworld_bench" else "compworld-tiny"
        assert f"Tiny CLIP {want}, weights sha256 " + LOCAL_BACKBONES[want].sha256[:16] + "… (the documented build)" in out
        runs = find_runs([str(tmp_path / world)])
        assert {(r.protocol, r.dataset, r.shots) for r in runs} == {("base2new", world, 16)}
        assert len(runs) == len(calls) and all(r.finished for r in runs)
        assert prepared[-1] == want
        rows = len(demo.METHODS) + len(demo.ABLATIONS)
        assert len(calls) == 2 * rows
        for args in calls:
            assert os.path.isfile(args[args.index("--config-file") + 1])
            assert args[args.index("--dataset-config-file") + 1] == f"configs/datasets/{world}.yaml"
        new_runs = [a for a in calls if "new" in a[a.index("DATASET.SUBSAMPLE_CLASSES") + 1:]]
        assert all("--model-dir" in a for a in new_runs if a[a.index("--trainer") + 1] != "ZeroshotCLIP")


def test_figure1_reading_mixtures_feed_only_the_mi_term(demo_root, tmp_path):
    """MIX_WEIGHT 0 (the default): the loss is CE - beta * MI, the CE sees the B clean rows
    only, and the critic sees the B clean and m mixed rows (MI_ON both)."""
    t = build(demo_root, str(tmp_path), "TRAINER.E2MIM.MI_WEIGHT", 2.0)
    assert t.cfg.TRAINER.E2MIM.MIX_WEIGHT == 0.0 and t.hparams.mix_level == "feature"
    rows = []
    orig = t.critic.forward

    def spy(a, b, generator=None, exclude=None):
        rows.append(a.shape[0])
        return orig(a, b, generator, exclude)

    t.critic.forward = spy
    batch = first_batch(t)
    out = t.forward_backward(batch)
    B = batch["img"].shape[0]
    assert rows[-1] == B + B // 2
    assert out["loss"] == pytest.approx(out["loss_ce"] - 2.0 * out["mi"], rel=1e-5, abs=1e-6)


def test_study_table_from_an_output_tree(tmp_path, capsys):
    """e2mim-study pairs each train_base run with its test_new run, averages the per-seed HM,
    shows the validation accuracy and the last epoch's diagnostics."""
    from e2mim_tools import study

    def write(phase, variant, seed, acc, **extra):
        d = tmp_path / "base2new" / phase / "compworld_shift" / "shots_16" / "E2MIM" / variant / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(dict(accuracy=acc, **extra)))

    for seed, (b, n, v) in {1: (80.0, 40.0, 70.0), 2: (60.0, 60.0, 72.0)}.items():
        write("train_base", "x", seed, b, val_accuracy=v, diagnostics=[{"epoch": 1, "class_cos": 0.9},
                                                                         {"epoch": 2, "class_cos": 0.1 * seed}])
        write("test_new", "x", seed, n)
    write("train_base", "lonely", 1, 50.0)  # no test_new run: not a pair, not shown
    study.main([str(tmp_path), "--columns", "class_cos"])
    row = next(ln for ln in capsys.readouterr().out.splitlines() if "| x " in ln)
    cells = [c.strip() for c in row.strip("|").split("|")]
    hm1, hm2 = 2 * 80 * 40 / 120, 60.0
    assert cells[:4] == ["E2MIM", "x", "2", "70.0 ± 10.0"] and cells[4] == "50.0 ± 10.0"
    assert cells[5] == f"{(hm1 + hm2) / 2:.1f} ± {abs(hm1 - hm2) / 2:.1f}"
    assert cells[6] == "71.0 ± 1.0" and cells[7] == "0.150 ± 0.050"
    with pytest.raises(SystemExit, match="no finished base-to-new pair"):
        study.main([str(tmp_path / "nothing")])


def test_demo_terminal_hears_from_a_training_run(tmp_path, monkeypatch, capsys):
    """While a run trains, its newest progress line and its log's path reach the terminal at
    least every PROGRESS_SECONDS (a new user once saw 11 silent minutes)."""
    import subprocess
    import sys
    from e2mim_tools import demo
    script = ("import time; print('epoch [3/50] batch [2/12] time 0.05 (0.05) loss 1.2', flush=True); "
              "time.sleep(1.2)")
    real = subprocess.Popen
    monkeypatch.setattr(demo.subprocess, "Popen",
                        lambda cmd, stdout, stderr: real([sys.executable, "-c", script], stdout=stdout, stderr=stderr))
    monkeypatch.setattr(demo, "PROGRESS_SECONDS", 0.3)
    log = str(tmp_path / "run" / "demo.log")
    demo.train_py(["--whatever"], log, "CoOp seed 1")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "CoOp seed 1" in ln]
    assert len(lines) >= 2
    assert lines[-1].endswith(f"CoOp seed 1: epoch [3/50] batch [2/12] (log: {log})")
