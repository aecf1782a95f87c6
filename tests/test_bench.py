"""The CPU bench's rule and report: recipes, rank correlation, targets, the table."""
import json
import os

import pytest

from e2mim_tools import bench
from e2mim_tools.published import REPORTED_BASE2NEW


def test_shipped_bench_recipes_are_the_scaling_rules_output():
    for t, cfg, with_selection in bench.recipe_files():
        with open(bench.recipe_path(t, cfg=cfg)) as f:
            assert f.read() == bench.recipe_text(t, selection=with_selection), "run e2mim-bench recipes --write"
    assert bench.main(["recipes", "--check"]) == 0


def test_rule_scales_depths_and_keeps_the_published_optimisation():
    assert [bench.scaled_depth(d, 4) for d in (1, 3, 9, 12)] == [1, 1, 3, 4]
    assert [bench.scaled_depth(d, 3) for d in (1, 9, 12)] == [1, 2, 3]
    assert [bench.scaled_depth(d, 6) for d in (1, 3, 9, 12)] == [1, 2, 5, 6]   # 4.5 rounds up
    assert (bench.VISION_LAYERS, bench.TEXT_LAYERS) == (4, 6)   # the bench tiny CLIP's towers, from its recipe
    r = bench.bench_recipe("PromptSRC")
    node = r["TRAINER"]["PROMPTSRC"]
    assert (node["PROMPT_DEPTH_VISION"], node["PROMPT_DEPTH_TEXT"], node["PREC"]) == (3, 5, "fp32")
    assert (node["TEXT_LOSS_WEIGHT"], node["IMAGE_LOSS_WEIGHT"], node["GPA_MEAN"]) == (25, 10, 15)
    assert r["OPTIM"]["LR"] == pytest.approx(0.0025 * bench.lr_factor("PromptSRC")) and r["OPTIM"]["MAX_EPOCH"] == 20 and r["DATALOADER"]["TRAIN_X"]["BATCH_SIZE"] == 4
    assert bench.bench_recipe("MaPLe")["TRAINER"]["MAPLE"]["PROMPT_DEPTH"] == 3   # both towers: the vision's 4 layers
    coop = bench.bench_recipe("CoOp")
    assert coop["OPTIM"]["LR"] == pytest.approx(0.002 * bench.lr_factor("CoOp"))
    # the step-count rule: the median benchmark's 51 base classes over 24 -> two passes an epoch;
    # a frozen image side trains on cached views, a prompted one (PromptSRC) on fresh images,
    # and zero-shot (no training) gets neither
    assert bench.STEP_REPEAT == 2
    assert coop["DATALOADER"]["TRAIN_X"]["REPEAT"] == 2 and coop["DATALOADER"]["FEATURE_CACHE"]["TRAIN_VIEWS"] == 64
    assert r["DATALOADER"]["TRAIN_X"]["REPEAT"] == 2 and "FEATURE_CACHE" not in r["DATALOADER"]
    zs = bench.bench_recipe("ZeroshotCLIP")["DATALOADER"]
    assert "REPEAT" not in zs.get("TRAIN_X", {}) and "FEATURE_CACHE" not in zs
    assert coop["INPUT"]["RRCROP_SCALE"] == "(0.5, 1.0)"
    assert coop["MODEL"]["BACKBONE"]["NAME"] == bench.BACKBONE == "compworld-tiny-deep" and coop["INPUT"]["SIZE"] == "(64, 64)"


def test_spearman_by_hand():
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # one adjacent swap among 4: 1 - 6 * 2 / (4 * 15) = 0.8
    assert bench.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties take their average rank: ranks (1.5, 1.5, 3) against (1, 2, 3)
    assert bench.spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(0.8660254, abs=1e-6)


def _rows(hms, base=None, new=None, n=5, se=0.3):
    out = {}
    for t, hm in hms.items():
        out[t] = dict(base=(base or {}).get(t, 80.0), new=(new or {}).get(t, 70.0), hm=hm, base_se=se,
                           new_se=se, hm_se=se, seeds=list(range(1, n + 1)))
    return out


def test_targets_pass_on_the_published_order_and_fail_on_a_swap():
    pub = {r.trainer: r.hm for r in REPORTED_BASE2NEW}
    base = {t: 70.0 if t == "ZeroshotCLIP" else 80.0 for t in bench.BASELINES}
    new = {t: 65.0 if t == "CoOp" else 70.0 for t in bench.BASELINES}
    checks = dict((n, ok) for n, ok, _ in bench.targets(_rows(pub, base, new), wall_minutes=42))
    assert all(checks.values()), checks
    swapped = dict(pub, PromptSRC=pub["CoOp"], CoOp=pub["PromptSRC"])
    checks = {n: (ok, m) for n, ok, m in bench.targets(_rows(swapped, base, new, n=3, se=0.7), wall_minutes=75)}
    assert checks["top two as published"][0] is False and checks["bottom two as published"][0] is False
    assert checks[f"HM rank correlation with the 11 benchmarks >= {bench.MIN_SPEARMAN}"][0] is False
    se_check = checks[f">= {bench.MIN_SEEDS} seeds, every HM standard error <= {bench.MAX_HM_STDERR}"]
    # sd = 0.7 * sqrt(3) = 1.212; (1.212 / 0.5)^2 = 5.88 -> 6 seeds at that spread
    assert se_check[0] is False and se_check[1].endswith("; at its seed spread it would need 6 seeds")
    assert bench.seeds_needed(0.5, 4) == 4 and bench.seeds_needed(1.0, 5) == 20
    assert checks[f"8 baselines x {bench.MIN_SEEDS} seeds in <= {bench.MAX_WALL_MINUTES} min on 2 cores"][0] is False
    flat = dict(base, KgCoOp=70.0)
    checks = {n: (ok, m) for n, ok, m in bench.targets(_rows(pub, flat, new))}
    assert checks["every prompt method gains on base against zero-shot"] == (False, "no gain: KgCoOp")


def _write_result(root, phase, trainer, seed, acc, sha="ab" * 32):
    d = os.path.join(root, "base2new", phase, bench.BENCH_DATASET, "shots_16", trainer, bench.BENCH_CFG, f"seed{seed}")
    os.makedirs(d)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"accuracy": acc, "backbone_sha256": sha}, f)


def test_report_reads_results_json_and_lists_what_is_unfinished(tmp_path):
    root = str(tmp_path)
    for seed, (b, n) in enumerate([(80.0, 60.0), (82.0, 62.0)], start=1):
        _write_result(root, "train_base", "CoOp", seed, b)
        _write_result(root, "test_new", "CoOp", seed, n)
    _write_result(root, "train_base", "KgCoOp", 1, 75.0)      # its new-class evaluation never ran
    text, rows, checks = bench.report(root)
    hm1, hm2 = 2 * 80 * 60 / 140, 2 * 82 * 62 / 144
    assert rows["CoOp"]["hm"] == pytest.approx((hm1 + hm2) / 2)
    assert rows["CoOp"]["base_se"] == pytest.approx(1.0)    # stdev 1.414 / sqrt 2
    assert "| CoOp | 81.00 ± 1.00 | 61.00 ± 1.00 |" in text
    assert "unfinished: KgCoOp seed 1" in text
    assert "NOT the documented build: not comparable" in text
    assert "[n/a ] HM rank correlation" in text


def test_e2mim_target_is_paired_by_seed_and_printed_apart_from_the_calibration(tmp_path):
    root = str(tmp_path)
    # HM of (b, n): 2bn / (b + n). E2MIM (60, 60) -> 60 both seeds; KgCoOp (50, 50) then (60, 40) -> 50, 48
    # CoOp (62, 40) -> 48.627 then (80, 80) -> 80: differences +11.373 and -20; bases 2 and 20 above
    for seed, ((eb, en), (kb, kn), (cb, cn)) in enumerate([((60, 60), (50, 50), (62, 40)),
                                                        ((60, 60), (60, 40), (80, 80))], start=1):
        for t, b, n in (("E2MIM", eb, en), ("KgCoOp", kb, kn), ("CoOp", cb, cn)):
            _write_result(root, "train_base", t, seed, float(b))
            _write_result(root, "test_new", t, seed, float(n))
    _write_result(root, "train_base", "E2MIM", 3, 60.0)   # unfinished: not paired
    text, rows, checks = bench.report(root)
    own = {n: (ok, m) for n, ok, m in bench.e2mim_checks(bench.collect(root)[0])}
    kg = own["E2MIM's HM above KgCoOp's by more than one standard error (paired by seed)"]
    assert kg == (True, "+11.00 ± 1.00 over seeds 1, 2")     # differences 10 and 12: mean 11, SE 1
    coop = own["E2MIM's HM above CoOp's by more than one standard error (paired by seed)"]
    assert coop == (False, "-4.31 ± 15.69 over seeds 1, 2")   # mean -4.31, SE |11.37 + 20| / 2
    assert own["E2MIM's base within 1 point of CoOp's"] == (False, "CoOp's base - E2MIM's = +11.00 over 2 seeds")
    assert "E2MIM's target (judged beside the baselines, never calibrating them):" in text
    assert not any("E2MIM" in name for name, _, _ in checks)   # never a calibration target


def test_every_shipped_trainer_config_normalizes_its_images():
    """Dassl's test transform normalizes only when "normalize" is listed: a config without it
    evaluates CLIP on raw pixels (zero-shot CLIP's files once did, unlike CoOp's own)."""
    from e2mim_engine.cli import default_cfg
    from e2mim_engine.config import merge_from_file
    from e2mim_engine.data.transforms import build_transform
    import torchvision.transforms as T
    root = os.path.join(bench.repo_configs(), "trainers")
    for trainer in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, trainer))):
            cfg = default_cfg()
            merge_from_file(cfg, os.path.join(root, trainer, name))
            tf = build_transform(cfg, is_train=False)
            assert any(isinstance(t, T.Normalize) for t in tf.transforms), f"{trainer}/{name}"


def test_learning_rate_rule_by_hand():
    # the default (3) stays unless another factor beats it by more than the margin (1 point)
    assert bench.choose_lr({3.0: 60.0, 1.0: 60.9, 10.0: 55.0})[0] == 3.0
    assert bench.choose_lr({3.0: 60.0, 1.0: 58.0, 10.0: 61.2})[0] == 10.0
    assert bench.choose_lr({3.0: 60.0, 1.0: 62.0, 10.0: 61.5})[0] == 1.0
    assert bench.choose_lr({3.0: 60.0, 1.0: 61.0, 10.0: 61.0})[0] == 3.0   # exactly the margin: not more
    with pytest.raises(bench.SelectionError, match="missing"):
        bench.choose_lr({3.0: 60.0, 1.0: 61.0})


def test_learning_rate_choice_averages_its_seeds_and_needs_every_one(tmp_path, monkeypatch):
    """`choose-lr` takes each factor's mean over LR_CHOICE_SEEDS: a factor that wins on seed 1
    alone but not on the mean is not chosen, and a missing seed is an error naming it."""
    from e2mim_tools.sweep.spec import expand, load
    assert bench.LR_CHOICE_SEEDS == (1, 2, 3)
    out = tmp_path / "out"
    (tmp_path / "data").mkdir()
    sw = load(os.path.join(bench.repo_configs(), "sweeps", "bench_lr.yaml"),
              {"data": str(tmp_path / "data"), "output": str(out), "seeds": [1, 2, 3]})
    tags = {m.label: (m.trainer, m.tag) for m in sw.methods}
    # CoOp: x1 wins seed 1 by 3 points, loses seeds 2 and 3 -> mean x3 60.0, x1 59.33: the default
    # KgCoOp: x10 by 1.5 on the mean (60 / 61.5) -> x10
    val = {("CoOp", "lr_x1"): [63.0, 58.0, 57.0], ("KgCoOp", "lr_x10"): [61.0, 62.0, 61.5]}
    runs = [r for r in expand(sw) if r.kind == "train"]
    for run in runs:
        t, tag = tags[run.method]
        acc = val.get((t, tag), [60.0] * 3)[run.seed - 1] if tag != "lr_x3" else 60.0
        os.makedirs(run.directory, exist_ok=True)
        with open(os.path.join(run.directory, "results.json"), "w") as f:
            json.dump({"accuracy": 50.0, "val_accuracy": acc}, f)
    choice = tmp_path / "bench_lr.json"
    monkeypatch.setattr(bench, "lr_choice_path", lambda configs=None: str(choice))
    assert bench.select_lr("bench_lr.yaml", str(tmp_path / "data"), str(out), log=lambda *a: None) == 0
    rec = json.loads(choice.read_text())
    assert "seed" not in rec and "mean over seeds 1, 2, 3" in rec["rule"]
    coop, kg = rec["methods"]["CoOp"], rec["methods"]["KgCoOp"]
    assert coop["factor"] == 3.0 and coop["seeds"] == [1, 2, 3]
    assert coop["val"]["1"] == pytest.approx(59.3333333) and coop["val_per_seed"]["1"] == [63.0, 58.0, 57.0]
    assert kg["factor"] == 10.0 and kg["val"]["10"] == pytest.approx(61.5)
    # seed 2 of one run missing: the rule refuses, naming the run and the seeds it needs
    gone = next(r for r in runs if r.seed == 2 and tags[r.method] == ("ProGrad", "lr_x10"))
    os.remove(os.path.join(gone.directory, "results.json"))
    with pytest.raises(bench.SelectionError, match=r"ProGrad lr_x10 seed 2 .*seeds 1, 2, 3"):
        bench.select_lr("bench_lr.yaml", str(tmp_path / "data"), str(out), log=lambda *a: None)


def test_learning_rate_sweeps_are_the_rules_output_and_the_choice_reaches_the_recipe(tmp_path, monkeypatch):
    assert bench.main(["lr-sweep", "--check"]) == 0
    text = bench.lr_sweep_text("bench_lr.yaml")
    assert "E2MIM" not in text and "ZeroshotCLIP" not in text      # E2MIM never runs while calibrating
    assert "{trainer: CoOp, cfg: compworld_bench, tag: lr_x10, opts: [OPTIM.LR, 0.02]}" in text
    assert "{trainer: E2MIM, cfg: compworld_bench_candidates, tag: lr_x1, opts: [OPTIM.LR, 0.002]}" in \
        bench.lr_sweep_text("e2mim_lr.yaml")
    choice = tmp_path / "bench_lr.json"
    choice.write_text(json.dumps({"methods": {"CoOp": {"factor": 10.0}}}))
    monkeypatch.setattr(bench, "lr_choice_path", lambda configs=None: str(choice))
    assert bench.bench_recipe("CoOp")["OPTIM"]["LR"] == pytest.approx(0.02)
    assert bench.bench_recipe("KgCoOp")["OPTIM"]["LR"] == pytest.approx(0.002 * bench.LR_SCALE)
