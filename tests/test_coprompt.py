"""CoPrompt (trainers/coprompt.py): the loss by hand on small tensors, the adapters' blend over
MaPLe's features, one training step against a hand computation (two views, the drawn
description through the frozen CLIP), what is frozen and checkpointed (ours and the published
layout), the description files and their errors, the authors' per-dataset settings and yaml."""
import json
import math
import os
import random

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_CFG, ROOT, build_demo_tiny, make_cfg
from e2mim_clip.deep_prompts import DeepPromptCLIP
from e2mim_clip.prompting import clip
from e2mim_engine.errors import ConfigError, DataError
from e2mim_trainers.coprompt import PUBLISHED_DATASET_SETTINGS, coprompt_losses

CFG_DIR = os.path.join(ROOT, "configs", "trainers", "CoPrompt")
# CoPrompt's published configs/trainers/coprompt.yaml, verbatim.
PUBLISHED_YAML = """DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 4
  TEST:
    BATCH_SIZE: 100
  NUM_WORKERS: 8
  K_TRANSFORMS: 2

INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["randaugment", "normalize"]

OPTIM:
  NAME: "sgd"
  LR: 0.0035
  MAX_EPOCH: 8
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5

TRAIN:
  PRINT_FREQ: 20

MODEL:
  BACKBONE:
    NAME: "ViT-B/16"

TRAINER:
  CoPrompt:
    N_CTX: 2
    CTX_INIT: "a photo of a"
    PREC: "fp16"
    PROMPT_DEPTH: 9
  W: 1.0
  DISTILL: "cosine"
"""


def write_descriptions(folder, classnames, n=3, name="demo"):
    """A description file in the published format: n short descriptions per class."""
    os.makedirs(folder, exist_ok=True)
    table = {c.replace("_", " "): [f"a {c} number {i} with {'stripes' if i % 2 else 'spots'}." for i in range(n)]
             for c in classnames}
    with open(os.path.join(folder, f"{name}_prompt.json"), "w") as f:
        json.dump(table, f)
    return table


def build(root, out, *extra, epochs=1):
    return build_demo_tiny("CoPrompt", root, out, *extra, epochs=epochs)


def test_loss_by_hand_on_small_tensors():
    label = torch.tensor([0, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    t_teacher = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v_teacher = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=-1)
    ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    text, image = 1 - (0.0 + 1.0) / 2, 1 - (math.sqrt(0.5) + 1.0) / 2
    out = coprompt_losses(logits, label, t, t_teacher, v, v_teacher, w=4.0)
    assert out["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert out["text"].item() == pytest.approx(text, abs=1e-6)
    assert out["image"].item() == pytest.approx(image, abs=1e-6)
    assert out["loss"].item() == pytest.approx(ce + 4.0 * (text + image), abs=1e-6)
    mse = coprompt_losses(logits, label, t, t_teacher, v, v_teacher, w=0.5, distill="mse")
    text_mse, image_mse = (1 + 1) / 4, ((1 - math.sqrt(0.5)) ** 2 + 0.5) / 4  # mean over every entry
    assert mse["loss"].item() == pytest.approx(ce + 0.5 * (text_mse + image_mse), abs=1e-6)


def test_step_by_hand_two_views_and_the_drawn_description(demo_root, tmp_path, monkeypatch):
    tr = build(demo_root, tmp_path / "r", "TRAINER.COPROMPT.DESCRIPTIONS", str(tmp_path / "desc"),
               "TRAINER.COPROMPT.W", 2.0)
    table = write_descriptions(str(tmp_path / "desc"), tr.classnames)
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    assert trainable == {f"prompt_learner.{n}" for n in (
        "ctx", "proj.weight", "proj.bias", "text_deep.0", "compound_prompt_projections.0.weight",
        "compound_prompt_projections.0.bias", "adapter_image.fc.0.weight", "adapter_image.fc.2.weight",
        "adapter_text.fc.0.weight", "adapter_text.fc.2.weight")}
    batch = next(iter(tr.train_loader_x))
    view1, view2 = batch["img"]
    assert not torch.equal(view1, view2)  # two RandAugment draws of each image
    m, pl = tr.model, tr.model.prompt_learner
    with torch.no_grad():  # by hand: MaPLe's features, the adapter blends, the frozen CLIP's teacher
        maple = DeepPromptCLIP(m.clip, pl)
        v0, t0 = maple.image_features(view1, normalize=False), maple.text_features(normalize=False)
        a = pl.adapter_image.fc
        v = F.normalize(0.1 * F.relu(a[2](F.relu(a[0](v0)))) + 0.9 * v0, dim=-1)
        a = pl.adapter_text.fc
        t = F.normalize(0.2 * F.relu(a[2](F.relu(a[0](t0)))) + 0.8 * t0, dim=-1)
        u = F.normalize(m.clip.encode_image(view2), dim=-1)
        d = F.normalize(m.clip.encode_text(clip.tokenize([table[c.replace("_", " ")][1] for c in tr.classnames])),
                        dim=-1)
        logits = m.clip.logit_scale.exp() * v @ t.t()
        ce = F.cross_entropy(logits, batch["label"])
        expected = ce + 2.0 * ((1 - F.cosine_similarity(t, d).mean()) + (1 - F.cosine_similarity(v, u).mean()))
    frozen = {k: v.clone() for k, v in m.clip.state_dict().items()}
    learned = {k: v.clone() for k, v in pl.state_dict().items()}
    monkeypatch.setattr(random, "randint", lambda a, b: 1 if (a, b) == (0, 2) else pytest.fail(f"{a}, {b}"))
    out = tr.forward_backward(batch)
    assert out["loss"] == pytest.approx(expected.item(), abs=1e-5)
    assert out["ce"] == pytest.approx(ce.item(), abs=1e-5)
    assert all(torch.equal(v, m.clip.state_dict()[k]) for k, v in frozen.items())
    assert all(not torch.equal(v, pl.state_dict()[k]) for k, v in learned.items())
    with torch.no_grad():  # inference: the adapters' logits on the model's one view
        expected_logits = m.logit_scale * m.image_features(view1) @ m.text_features().t()
    tr.set_model_mode("eval")
    torch.testing.assert_close(tr.eval_step(view1), expected_logits, rtol=1e-5, atol=1e-4)


def test_one_view_teaches_on_the_same_image_and_checkpoints_round_trip(demo_root, tmp_path):
    tr = build(demo_root, tmp_path / "base", "DATALOADER.K_TRANSFORMS", 1, "DATASET.SUBSAMPLE_CLASSES", "base")
    image, teacher_image, _ = tr.parse_batch_train(next(iter(tr.train_loader_x)))
    assert teacher_image is image
    tr.train()
    ckpt = torch.load(tmp_path / "base" / "prompt_learner" / "model.pth.tar-1", weights_only=False)
    assert not any(k.startswith(("visual", "transformer", "token_embedding")) for k in ckpt["state_dict"])
    assert "adapter_text.fc.2.weight" in ckpt["state_dict"]
    # an evaluation on the new classes needs no descriptions; it loads ours, then the published layout
    new = build(demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new", "TRAINER.COPROMPT.DESCRIPTIONS", "")
    new.load_model(str(tmp_path / "base"), epoch=1)
    for k, v in tr.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(new.model.prompt_learner.state_dict()[k], v)
    state = {("prompt_learner." + k).replace("prompt_learner.text_deep.", "prompt_learner.compound_prompts_text."): v
             for k, v in tr.model.prompt_learner.state_dict().items() if not k.startswith("adapter_")}
    state.update({k: v for k, v in tr.model.prompt_learner.state_dict().items() if k.startswith("adapter_")})
    state["model_distill.visual.conv1.weight"] = torch.zeros(1)  # the published teacher CLIP: not ours
    os.makedirs(tmp_path / "pub" / "MultiModalPromptLearner")
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "pub" / "MultiModalPromptLearner" / "model.pth.tar-1")
    pub = build(demo_root, tmp_path / "pub_new", "DATASET.SUBSAMPLE_CLASSES", "new")
    pub.load_model(str(tmp_path / "pub"), epoch=1)
    for k, v in tr.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(pub.model.prompt_learner.state_dict()[k], v)


def test_description_files_and_their_errors(demo_root, tmp_path):
    folder = tmp_path / "desc"
    tr = build(demo_root, tmp_path / "r", "TRAINER.COPROMPT.DESCRIPTIONS", str(folder))
    with pytest.raises(DataError, match=r"no file .*demo_prompt\.json.*gpt_file/<name>_prompt\.json of "
                                        r"github\.com/ShuvenduRoy/CoPrompt"):
        tr.descriptions()
    table = write_descriptions(str(folder), tr.classnames)
    assert tr.descriptions() == table and tr.teacher_text.shape == (3, len(tr.classnames), 128)
    first = sorted(table)[0]
    for broken, match in [({k: v for k, v in table.items() if k != first}, f"no entry for 1 of the run's .*'{first}'"),
                          (dict(table, **{first: ["only one"]}), "1 to 3 descriptions per class.*same number"),
                          (dict(table, **{first: []}), f"entry of '{first}' is not a non-empty list"),
                          (list(table), "must be a JSON object")]:
        with open(folder / "demo_prompt.json", "w") as f:
            json.dump(broken, f)
        with pytest.raises(DataError, match=match):
            tr.descriptions()
    (folder / "demo_prompt.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        tr.descriptions()
    empty = build(demo_root, tmp_path / "e", "TRAINER.COPROMPT.DESCRIPTIONS", "")
    with pytest.raises(ConfigError, match="DESCRIPTIONS is empty.*demo_prompt.json"):
        empty.descriptions()
    names = [c.replace("_", " ") for c in tr.classnames]
    templates = build(demo_root, tmp_path / "t").descriptions()  # the demo file: CLIP's templates
    assert list(templates) == names and templates[names[0]][0] == f"itap of a {names[0]}."


def test_published_layout_and_the_authors_per_dataset_settings(tmp_path):
    published = tmp_path / "coprompt.yaml"
    published.write_text(PUBLISHED_YAML)
    food = os.path.join(ROOT, "configs", "datasets", "food101.yaml")
    for dataset, settings in [(food, PUBLISHED_DATASET_SETTINGS["Food101"]), (DEMO_CFG, None)]:
        ours = make_cfg("--trainer", "CoPrompt", "--dataset-config-file", dataset, "--config-file",
                        os.path.join(CFG_DIR, "coprompt.yaml"))
        theirs = make_cfg("--trainer", "CoPrompt", "--dataset-config-file", dataset, "--config-file", published)
        assert ours == theirs
        c = ours.TRAINER.COPROMPT
        if settings:  # Food101: depth 9, 4 tokens, W 0.5, 5 epochs
            assert (c.PROMPT_DEPTH, c.N_CTX, c.W, ours.OPTIM.MAX_EPOCH) == (9, 4, 0.5, 5)
        else:         # the file's values
            assert (c.PROMPT_DEPTH, c.N_CTX, c.W, ours.OPTIM.MAX_EPOCH) == (9, 2, 1.0, 8)
    c = make_cfg("--trainer", "CoPrompt", "--dataset-config-file", food, "--config-file", published, "TRAINER.W", 3.0)
    assert (c.TRAINER.COPROMPT.W, c.TRAINER.COPROMPT.N_CTX) == (3.0, 4)  # command-line pairs override them
    c = make_cfg("--trainer", "CoPrompt", "--dataset-config-file", food, "--config-file", published,
                 "TRAINER.COPROMPT.DATASET_SETTINGS", False)
    assert (c.TRAINER.COPROMPT.W, c.OPTIM.MAX_EPOCH) == (1.0, 8)
    with pytest.raises(ConfigError, match="W both in CoPrompt's published layout"):
        make_cfg("--trainer", "CoPrompt", "TRAINER.W", 2.0, "TRAINER.COPROMPT.W", 3.0)
    assert len(PUBLISHED_DATASET_SETTINGS) == 11


def test_published_yaml_values():
    cfg = make_cfg("--trainer", "CoPrompt", "--config-file", os.path.join(CFG_DIR, "coprompt.yaml"))
    want = {"DATALOADER.TRAIN_X.BATCH_SIZE": 4, "DATALOADER.TEST.BATCH_SIZE": 100, "DATALOADER.K_TRANSFORMS": 2,
            "INPUT.TRANSFORMS": ["randaugment", "normalize"], "INPUT.INTERPOLATION": "bicubic",
            "OPTIM.NAME": "sgd", "OPTIM.LR": 0.0035, "OPTIM.MAX_EPOCH": 8, "OPTIM.LR_SCHEDULER": "cosine",
            "OPTIM.WARMUP_EPOCH": 1, "OPTIM.WARMUP_TYPE": "constant", "OPTIM.WARMUP_CONS_LR": 1e-5,
            "MODEL.BACKBONE.NAME": "ViT-B/16", "TRAINER.COPROMPT.N_CTX": 2, "TRAINER.COPROMPT.CTX_INIT": "a photo of a",
            "TRAINER.COPROMPT.PREC": "fp16", "TRAINER.COPROMPT.PROMPT_DEPTH": 9, "TRAINER.COPROMPT.W": 1.0,
            "TRAINER.COPROMPT.DISTILL": "cosine", "INPUT.RANDAUGMENT_N": 2, "INPUT.RANDAUGMENT_M": 10}
    for key, value in want.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert (list(node) if isinstance(value, list) else node) == value, key
