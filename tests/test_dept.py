"""DePT (trainers/dept.py): the CAT head's loss and fused logits against hand-computed values,
the trainers' loss against the formula on their own features, the head's learning rate, the
base/new rule by class names, checkpoint round trips, raw-feature caches, and the published
yaml files with their published values."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_engine.errors import ConfigError
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer
from e2mim_trainers.dept import CATHead, head_rows, similarity_logits

BASES = {"ExtrasLinearProbeCoOp": "COOP", "ExtrasLinearProbeCoCoOp": "COCOOP",
         "ExtrasLinearProbeKgCoOp": "KGCOOP", "ExtrasLinearProbeMaPLe": "MAPLE"}


def _cfg_file(trainer, name="demo_tiny"):
    return os.path.join(ROOT, "configs", "trainers", trainer, f"{name}.yaml")


def _trainer(root, out, trainer, *extra, subsample="base", epochs=1):
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                   "--config-file", _cfg_file(trainer), "--output-dir", out, "DATASET.NUM_SHOTS", 2,
                   "DATASET.SUBSAMPLE_CLASSES", subsample, "OPTIM.MAX_EPOCH", epochs,
                   "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "VERBOSE", False, *extra)
    set_random_seed(1)
    return build_trainer(cfg)


# ---- the head on hand-made tensors --------------------------------------------------------
def _hand_head():
    head = CATHead(2, 2)
    with torch.no_grad():
        head.cat_image.scale.copy_(torch.tensor([2.0, 1.0]))
        head.cat_image.bias.copy_(torch.tensor([0.0, 1.0]))
        head.cat_text.scale.copy_(torch.tensor([2.0, 1.0]))
        head.cat_text.bias.copy_(torch.tensor([0.0, 1.0]))
        head.linear.weight.copy_(torch.eye(2))
        head.linear.bias.zero_()
    return head


def test_cat_loss_and_fused_logits_by_hand():
    head = _hand_head()
    img, txt, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0], [1.0, 1.0]]), torch.tensor([1])
    logits, labels = head.train_logits(img, txt, y, scale=1.0)
    # rows: cat_t(t_1) = (2*1, 1*1 + 1) = (2, 2), cat_v(v) = (2*1, 0 + 1) = (2, 1); both labelled 1
    assert torch.equal(logits, torch.tensor([[2.0, 2.0], [2.0, 1.0]])) and labels.tolist() == [1, 1]
    loss_cat = F.cross_entropy(logits, labels)
    assert loss_cat.item() == pytest.approx((math.log(2) + 1 + math.log(1 + math.exp(-1))) / 2, abs=1e-6)
    sim = similarity_logits(img, txt, 1.0)                # cos: 0 and 1/sqrt(2)
    assert sim.tolist()[0] == pytest.approx([0.0, 2 ** -0.5], abs=1e-6)
    loss_ce = F.cross_entropy(sim, y)
    assert loss_ce.item() == pytest.approx(math.log(1 + math.exp(2 ** -0.5)) - 2 ** -0.5, abs=1e-6)
    # the loss the trainers take: 0.3 * 0.40083 + 0.7 * 1.00320
    assert (0.3 * loss_ce + 0.7 * loss_cat).item() == pytest.approx(0.822489, abs=1e-5)
    # inference on the head's classes: 0.3 * sim + 0.7 * W cat_v(v) + b
    fused = 0.3 * sim + 0.7 * head.image_logits(img, txt, 1.0)
    assert fused.tolist()[0] == pytest.approx([1.4, 0.3 * 2 ** -0.5 + 0.7], abs=1e-6)
    # a subset of the head's classes, in the run's order
    assert head.image_logits(img, txt, 1.0, rows=[1, 0]).tolist() == [[1.0, 2.0]]


def test_cat_head_per_image_text_and_similarity_kind():
    head = _hand_head()
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[3.0, 0.0], [0.0, 1.0]]])   # [B, C, D]: CoCoOp
    logits, labels = head.train_logits(img, txt, torch.tensor([1, 0]), scale=1.0)
    # text rows: image 0's class 1 (2, 2) and image 1's class 0 (6, 1); then the images (2, 1), (0, 2)
    assert logits.tolist() == [[2.0, 2.0], [6.0, 1.0], [2.0, 1.0], [0.0, 2.0]] and labels.tolist() == [1, 0, 1, 0]
    sim = CATHead(2, 2, kind="similarity", cat=False)
    assert sim.linear is None and not list(sim.parameters())
    out, lab = sim.train_logits(img, txt, torch.tensor([1, 0]), scale=10.0)
    assert torch.allclose(out, similarity_logits(img, txt, 10.0)) and lab.tolist() == [1, 0]


def test_head_rows_by_class_name():
    assert head_rows(["a", "b", "c"], ["a", "b", "c"]) == [0, 1, 2]
    assert head_rows(["a", "b", "c"], ["c", "a"]) == [2, 0]          # ImageNet-A/-R: a subset
    assert head_rows(["a", "b", "c"], ["d", "e"]) is None            # base-to-new's new half
    assert head_rows(["a", "b"], ["a", "x"]) is None                 # another dataset
    assert head_rows(None, ["a"]) is None
    assert head_rows(["crane", "b", "crane"], ["crane", "crane"]) == [0, 2]   # a name held twice, in order


# ---- the trainers -------------------------------------------------------------------------
def _batch(t):
    return next(iter(t.train_loader_x))


@pytest.mark.parametrize("trainer", sorted(BASES))
def test_loss_is_the_formula_on_the_trainers_features(demo_root, tmp_path, trainer):
    t = _trainer(demo_root, str(tmp_path), trainer)
    batch = _batch(t)
    image, label = t.parse_batch_train(batch)
    t.set_model_mode("train")
    with torch.no_grad():
        img, txt = t.dept_features(image)
        s = t.model.logit_scale
        # the formula, written out here: cosines, the head on raw features, the CE terms
        v, tt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        sim = s * (v @ tt.t() if tt.dim() == 2 else torch.einsum("bd,bcd->bc", v, tt))
        h = t.head
        t_y = txt[label] if txt.dim() == 2 else txt[torch.arange(len(label)), label]
        rows = torch.cat([t_y * h.cat_text.scale + h.cat_text.bias, img * h.cat_image.scale + h.cat_image.bias])
        lin = rows @ h.linear.weight.t() + h.linear.bias
        want = 0.3 * F.cross_entropy(sim, label) + 0.7 * F.cross_entropy(lin, torch.cat([label, label]))
        if trainer == "ExtrasLinearProbeKgCoOp":
            want = want + 2.0 * (1 - F.cosine_similarity(txt, t.text_h, dim=1).mean())
    assert tuple(txt.shape[-2:]) == (t.num_classes, img.shape[1]) and img.norm(dim=-1).max() > 1.5  # unnormalized
    got = t.train_step(batch)
    assert got["loss"] == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    assert ("loss_kg" in got) == (trainer == "ExtrasLinearProbeKgCoOp")


def test_head_learning_rate_and_what_is_learned(demo_root, tmp_path):
    t = _trainer(demo_root, str(tmp_path), "ExtrasLinearProbeCoOp", "OPTIM.LR", 0.0035)
    assert t.get_model_names() == ["prompt_learner", "dept_head"]
    assert t._optims["dept_head"].param_groups[0]["initial_lr"] == pytest.approx(0.0035 * 6.5)
    assert t._optims["prompt_learner"].param_groups[0]["initial_lr"] == pytest.approx(0.0035)
    # the published warm-up sets every group to WARMUP_CONS_LR, the head's too
    assert t._optims["dept_head"].param_groups[0]["lr"] == pytest.approx(1e-5)
    names = sorted(n for n, p in t.head.named_parameters() if p.requires_grad)
    assert names == ["cat_image.bias", "cat_image.scale", "cat_text.bias", "cat_text.scale",
                     "linear.bias", "linear.weight"]
    assert not any(p.requires_grad for p in t.model.clip.parameters())
    D, C = t.model.clip.text_projection.shape[1], t.num_classes
    assert t.num_trainable_params() == t.model.prompt_learner.ctx.numel() + 4 * D + C * D + C


def test_base_new_rule_and_checkpoint_round_trip(demo_root, tmp_path):
    train = str(tmp_path / "train")
    t = _trainer(demo_root, train, "ExtrasLinearProbeCoOp", "TRAINER.COOP.N_CTX", 4)
    t.train()
    image = next(iter(t.test_loader))["img"]
    t.set_model_mode("eval")
    with torch.no_grad():
        fused = t.model_inference(image)
        img, txt = t.dept_features(image)
        sim = similarity_logits(img, txt, t.model.logit_scale)
        head = t.head.linear(t.head.cat_image(img))
    assert torch.allclose(fused, 0.3 * sim + 0.7 * head, atol=1e-5)
    # eval-only on the same (base) classes: the head is loaded and fused, the same logits
    base = _trainer(demo_root, str(tmp_path / "base"), "ExtrasLinearProbeCoOp", "TRAINER.COOP.N_CTX", 4)
    base.load_model(train, 1)
    base.set_model_mode("eval")
    with torch.no_grad():
        assert torch.allclose(base.model_inference(image), fused, atol=1e-6)
    assert base.rows == list(range(t.num_classes))
    # the new half: prompts only, similarity logits; the checkpoint holds no CLIP tensors
    new = _trainer(demo_root, str(tmp_path / "new"), "ExtrasLinearProbeCoOp", "TRAINER.COOP.N_CTX", 4,
                   subsample="new")
    new.load_model(train, 1)
    assert new.rows is None
    assert torch.equal(new.model.prompt_learner.ctx, t.model.prompt_learner.ctx)
    new.set_model_mode("eval")
    with torch.no_grad():
        img = new.model.image_features(image, normalize=False)
        want = similarity_logits(img, new.model.text_features(normalize=False), new.model.logit_scale)
        assert torch.allclose(new.model_inference(image), want, atol=1e-6)
    assert new.test() >= 0 and new.result_metadata()["dept_head_used"] is False
    state = torch.load(os.path.join(train, "dept_head", "model.pth.tar-1"), weights_only=False)["state_dict"]
    assert sorted(state) == ["cat_image.bias", "cat_image.scale", "cat_text.bias", "cat_text.scale",
                             "linear.bias", "linear.weight"]


def test_head_rows_of_a_subset_are_picked_by_name(demo_root, tmp_path):
    """Trained on all classes, evaluated on the base half (ImageNet -> ImageNet-A's case)."""
    train = str(tmp_path / "all")
    t = _trainer(demo_root, train, "ExtrasLinearProbeCoOp", "TRAINER.COOP.N_CTX", 4, subsample="all")
    t.train()
    sub = _trainer(demo_root, str(tmp_path / "sub"), "ExtrasLinearProbeCoOp", "TRAINER.COOP.N_CTX", 4,
                   subsample="base")
    sub.load_model(train, 1)
    assert sub.rows == [t.classnames.index(c) for c in sub.classnames] and len(sub.rows) < t.num_classes
    assert sub.head.linear.out_features == t.num_classes
    assert torch.equal(sub.head.linear.weight, t.head.linear.weight)


def test_feature_cache_holds_raw_features_and_gives_the_same_numbers(demo_root, tmp_path):
    train = str(tmp_path / "train")
    t = _trainer(demo_root, train, "ExtrasLinearProbeKgCoOp")
    t.train()
    assert t.frozen_feature_identity()["features"].endswith("normalize=False)")
    cached = t.evaluate()
    again = _trainer(demo_root, str(tmp_path / "nocache"), "ExtrasLinearProbeKgCoOp",
                     "DATALOADER.FEATURE_CACHE.EVAL", False)
    again.load_model(train, 1)
    assert again.evaluate() == cached


# ---- configuration ------------------------------------------------------------------------
PUBLISHED = {  # Koorye/DePT configs/trainers/<trainer>/<file>.yaml (every trainer yaml it ships)
    ("ExtrasLinearProbeCoOp", "vit_b16_ep10_bs4_lr35"): {"BATCH": 4, "LR": 0.0035, "N_CTX": 16, "CTX_INIT": ""},
    ("ExtrasLinearProbeCoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"): {"BATCH": 1, "LR": 0.002, "N_CTX": 4,
                                                                  "CTX_INIT": "a photo of a"},
    ("ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35"): {"BATCH": 4, "LR": 0.0035, "N_CTX": 4,
                                                                 "CTX_INIT": "a photo of a", "W": 2.0, "CSC": False,
                                                                 "CLASS_TOKEN_POSITION": "end"},
    ("ExtrasLinearProbeMaPLe", "vit_b16_c2_ep10_batch4_2ctx"): {"BATCH": 4, "LR": 0.0035, "N_CTX": 2,
                                                                "CTX_INIT": "a photo of a", "PROMPT_DEPTH": 9},
}


# The same repository's baseline recipes (the "w/o DePT" rows of its Table 1), in the bases' folders:
# the DePT file's values but the head; MaPLe's is tested with MaPLe's files (tests/test_deep_prompts.py).
BASELINE_FILES = {("CoOp", "vit_b16_ep10_bs4_lr35"): "ExtrasLinearProbeCoOp",
                  ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"): "ExtrasLinearProbeCoCoOp",
                  ("KgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35"): "ExtrasLinearProbeKgCoOp",
                  ("MaPLe", "vit_b16_c2_ep10_batch4_2ctx"): "ExtrasLinearProbeMaPLe"}


@pytest.mark.parametrize("base,name", sorted(BASELINE_FILES))
def test_the_baseline_recipes_are_the_dept_files_without_the_head(base, name):
    dept = BASELINE_FILES[(base, name)]
    theirs = make_cfg("--trainer", base, "--config-file", _cfg_file(base, name))
    ours = make_cfg("--trainer", dept, "--config-file", _cfg_file(dept, name))
    node = BASES[dept]
    assert dict(theirs.TRAINER[node]) == dict(ours.TRAINER[node])
    for key in ("OPTIM", "DATALOADER", "INPUT", "MODEL"):
        assert theirs[key] == ours[key], key


def test_every_published_file_is_there_and_nothing_else():
    for trainer in BASES:
        shipped = {f[:-5] for f in os.listdir(os.path.join(ROOT, "configs", "trainers", trainer))
                   if f not in ("demo_tiny.yaml", "compworld_bench.yaml")}
        assert shipped == {n for t, n in PUBLISHED if t == trainer}


@pytest.mark.parametrize("trainer,name", sorted(PUBLISHED))
def test_published_values(trainer, name):
    cfg = make_cfg("--trainer", trainer, "--config-file", _cfg_file(trainer, name))
    want = dict(PUBLISHED[(trainer, name)])
    node = cfg.TRAINER[BASES[trainer]]
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == want.pop("BATCH") and cfg.OPTIM.LR == want.pop("LR")
    assert {k: node[k] for k in want} == want and node.PREC == "fp16"
    assert (cfg.OPTIM.NAME, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH,
            cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR) == ("sgd", 10, "cosine", 1, "constant", 1e-5)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg.INPUT.INTERPOLATION == "bicubic"
    # DePT's own keys are the published train.py's defaults
    assert dict(cfg.TRAINER.DEPT) == {"WEIGHT": 0.7, "HEAD": "linear", "TEST_TIME_FUSION": True, "CAT": True,
                                      "HEAD_LR_MULT": 6.5}


def test_the_published_layouts_read_as_ours(tmp_path):
    # DePT's KgCoOp file: KgCoOp's keys under TRAINER.COOP, with ALPHA (never read)
    theirs = tmp_path / "kg.yaml"
    with open(_cfg_file("ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35")) as f:
        text = f.read().replace("  KGCOOP:", "  COOP:").replace("    W: 2.0", "    ALPHA: 1.0\n    W: 2.0")
    theirs.write_text(text)
    cfg = make_cfg("--trainer", "ExtrasLinearProbeKgCoOp", "--config-file", theirs)
    ours = make_cfg("--trainer", "ExtrasLinearProbeKgCoOp", "--config-file",
                    _cfg_file("ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35"))
    keys = ("N_CTX", "CTX_INIT", "CSC", "CLASS_TOKEN_POSITION", "W", "PREC")
    assert {k: cfg.TRAINER.KGCOOP[k] for k in keys} == {k: ours.TRAINER.KGCOOP[k] for k in keys}
    assert cfg.TRAINER.KGCOOP.KEYS_FROM == "TRAINER.COOP"
    # without W, DePT's default (2.0), not KgCoOp's (1.0)
    theirs.write_text(text.replace("    W: 2.0\n", ""))
    assert make_cfg("--trainer", "ExtrasLinearProbeKgCoOp", "--config-file", theirs).TRAINER.KGCOOP.W == 2.0
    # the published command-line keys
    cfg = make_cfg("--trainer", "ExtrasLinearProbeCoOp", "TRAINER.LINEAR_PROBE.WEIGHT", 0.5,
                   "TRAINER.LINEAR_PROBE.TYPE", "similarity", "TRAINER.FILM.LINEAR_PROBE", False, "OPTIM.LR_EXP", 3.0)
    assert (cfg.TRAINER.DEPT.WEIGHT, cfg.TRAINER.DEPT.HEAD, cfg.TRAINER.DEPT.CAT, cfg.TRAINER.DEPT.HEAD_LR_MULT) == \
        (0.5, "similarity", False, 3.0)


def test_bad_keys_say_which(demo_root, tmp_path):
    with pytest.raises(ConfigError, match=r"TRAINER.DEPT.WEIGHT must lie in \[0, 1\]; got 1.5"):
        _trainer(demo_root, str(tmp_path), "ExtrasLinearProbeCoOp", "TRAINER.DEPT.WEIGHT", 1.5)
    with pytest.raises(ConfigError, match="Unknown TRAINER.DEPT.HEAD='mlp'; valid: linear, similarity"):
        _trainer(demo_root, str(tmp_path), "ExtrasLinearProbeCoOp", "TRAINER.DEPT.HEAD", "mlp")


def test_reported_rows_and_bench_recipes():
    from e2mim_tools import bench
    from e2mim_tools.published import REPORTED_BASE2NEW
    rows = {r.trainer: r for r in REPORTED_BASE2NEW}
    for trainer in BASES:
        r = rows[trainer]
        assert r.hm == pytest.approx(2 * r.base * r.new / (r.base + r.new), abs=0.006) and "DePT" in r.source
        assert trainer in bench.NEWER_TRAINERS
    recipe = bench.bench_recipe("ExtrasLinearProbeKgCoOp")
    assert recipe["TRAINER"]["KGCOOP"]["PREC"] == "fp32" and recipe["TRAINER"]["KGCOOP"]["W"] == 2.0
    assert recipe["OPTIM"]["LR"] == pytest.approx(0.0035 * bench.LR_SCALE) and recipe["OPTIM"]["MAX_EPOCH"] == 10


@pytest.mark.parametrize("trainer,published", [
    ("ExtrasLinearProbeCoOp", ["prompt_learner.ctx"]),
    ("ExtrasLinearProbeCoCoOp", ["prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight",
                                 "prompt_learner.meta_net.linear2.bias"]),
    ("ExtrasLinearProbeMaPLe", ["prompt_learner.ctx", "prompt_learner.proj.weight",
                                "prompt_learner.compound_prompts_text.0",
                                "prompt_learner.compound_prompt_projections.0.bias"]),
])
def test_parity_tool_maps_the_published_names_onto_our_model(demo_root, tmp_path, trainer, published):
    """The learnable tensors the published ExtrasLinearProbe* trainers hold (their whole model's
    names) land on our model's parameters, so the parity tool starts both from the same tensors."""
    from e2mim_tools.parity import dept as parity
    from e2mim_tools.parity.ours_side import renamer
    head = ["film_lp_img.scale", "film_lp_img.bias", "film_lp_text.scale", "film_lp_text.bias",
            "linear_probe_proj.weight", "linear_probe_proj.bias"]
    case = next(c for c in parity.CASES if c.trainer == trainer and not c.of)
    t = _trainer(demo_root, str(tmp_path), trainer)
    ours = {n for n, p in t.model.named_parameters() if p.requires_grad}
    mapped = renamer(case.our_trainer, case.rename)({k: None for k in head + published})
    assert set(mapped) <= ours and len(mapped) == len(head + published)
    assert {k for k in ours if k.startswith("head.")} == {k for k in mapped if k.startswith("head.")}
