"""The authors' released checkpoints: files with the exact structure the published Dassl
trainers save (Dassl's save_checkpoint of the model each registers: its whole state_dict,
the epoch, the optimizer's and the warmup LR scheduler's state_dict -- which pickles the
successor CosineAnnealingLR object and, inside it, the SGD optimizer -- and val_result),
evaluated with --eval-only --model-dir: read without arbitrary unpickling, parameter names
mapped to ours, the same logits as the model whose tensors they hold. Files naming any
other type are refused with the reason, truncated ones are reported as such."""
import os
import pathlib
from collections import OrderedDict

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_engine.checkpoint import PickledRecord, load_checkpoint
from e2mim_engine.cli import main
from e2mim_engine.errors import UserError
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer
from e2mim_engine.utils import read_json

EPOCH = 3


class ConstantWarmupScheduler(LRScheduler):
    """Dassl's ConstantWarmupScheduler (its build_lr_scheduler with WARMUP_TYPE constant, as in
    every published config): state_dict() is its __dict__ without the optimizer, so the
    successor scheduler object is pickled into the checkpoint."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr):
        self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
        super().__init__(optimizer)

    def get_lr(self):
        return [self.cons_lr for _ in self.base_lrs]


def build(trainer, root, out, seed=1, *extra):
    cfg = make_cfg("--root", root, "--seed", seed, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                   "--config-file", os.path.join(ROOT, "configs", "trainers", trainer, "demo_tiny.yaml"),
                   "--output-dir", str(out), "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", "base",
                   "OPTIM.MAX_EPOCH", EPOCH, "VERBOSE", False, *extra)
    set_random_seed(seed)
    return build_trainer(cfg)


def text_encoder_state(clip_model):
    sd = OrderedDict()
    for k, v in clip_model.state_dict().items():
        if k.startswith(("transformer.", "ln_final.")) or k in ("positional_embedding", "text_projection"):
            sd["text_encoder." + k] = v
    return sd


def frozen_clip_state(clip_model):
    """The frozen part of a published whole-model state_dict: image_encoder, text_encoder,
    logit_scale (CustomCLIP's attribute names in the published MaPLe/IVLP/PromptSRC)."""
    sd = OrderedDict(("image_encoder." + k, v) for k, v in clip_model.visual.state_dict().items())
    sd.update(text_encoder_state(clip_model))
    sd["logit_scale"] = clip_model.logit_scale.detach()
    return sd


def published_state(trainer, t):
    """The state_dict the published trainer of ``trainer`` saves for the prompts of ``t``,
    written with the published names (by hand, not with the project's mapping)."""
    pl, clip_model = t.model.prompt_learner, t.model.clip
    buffers = {"token_prefix": pl.token_prefix, "token_suffix": pl.token_suffix}
    if trainer in ("CoOp", "KgCoOp", "ProGrad"):
        return OrderedDict(ctx=pl.ctx.detach(), **buffers)
    if trainer == "CoCoOp":
        sd = OrderedDict(ctx=pl.ctx.detach())
        sd.update(("meta_net." + k, v) for k, v in pl.meta_net.state_dict().items())
        sd.update(buffers)
        return sd
    if trainer == "MaPLe":
        sd = OrderedDict([("prompt_learner.ctx", pl.ctx.detach())])
        sd.update(("prompt_learner.proj." + k, v) for k, v in pl.proj.state_dict().items())
        for i, p in enumerate(pl.text_deep):
            sd[f"prompt_learner.compound_prompts_text.{i}"] = p.detach()
        for i, m in enumerate(pl.compound_prompt_projections):
            sd.update((f"prompt_learner.compound_prompt_projections.{i}.{k}", v) for k, v in m.state_dict().items())
        sd.update(("prompt_learner." + k, v) for k, v in buffers.items())
        sd.update(frozen_clip_state(clip_model))
        return sd
    # IVLP / PromptSRC: vision prompts inside CLIP's blocks (VPT at the input, VPT_shallow of
    # blocks 1..), text prompts of blocks 1.. inside the text encoder's blocks
    sd = frozen_clip_state(clip_model)
    sd["image_encoder.VPT"] = pl.vision_ctx.detach()
    for i, p in enumerate(pl.vision_deep):
        sd[f"image_encoder.transformer.resblocks.{i + 1}.VPT_shallow"] = p.detach()
    for i, p in enumerate(pl.text_deep):
        sd[f"text_encoder.transformer.resblocks.{i + 1}.VPT_shallow"] = p.detach()
    sd["prompt_learner.ctx"] = pl.ctx.detach()
    sd.update(("prompt_learner." + k, v) for k, v in buffers.items())
    if trainer == "PromptSRC":
        sd.update(("prompt_learner.ZS_image_encoder." + k, v) for k, v in clip_model.visual.state_dict().items())
    return sd


FOLDER = {"MaPLe": "MultiModalPromptLearner", "IVLP": "VLPromptLearner", "PromptSRC": "VLPromptLearner"}


def dassl_save(out, trainer, state_dict, epoch=EPOCH, half=False):
    """Dassl's save_checkpoint: OUTPUT/<model name>/model.pth.tar-<epoch> and its checkpoint file."""
    if half:  # PREC fp16 runs (the released ViT-B/16 files) hold fp16 tensors
        state_dict = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in state_dict.items())
    params = [torch.nn.Parameter(v.detach().clone().float()) for k, v in state_dict.items()
              if k.endswith(("ctx", "VPT", "VPT_shallow"))][:3]
    optim = torch.optim.SGD(params, lr=0.002, momentum=0.9, weight_decay=5e-4)
    sched = ConstantWarmupScheduler(optim, CosineAnnealingLR(optim, float(epoch)), 1, 1e-5)
    sum(p.square().sum() for p in params).backward()
    optim.step()
    sched.step()
    folder = pathlib.Path(out) / FOLDER.get(trainer, "prompt_learner")
    folder.mkdir(parents=True)
    torch.save({"state_dict": state_dict, "epoch": epoch, "optimizer": optim.state_dict(),
                "scheduler": sched.state_dict(), "val_result": None}, folder / f"model.pth.tar-{epoch}")
    (folder / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")
    return folder / f"model.pth.tar-{epoch}"


def perturb(t, seed):
    """Prompts unlike any initialisation (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in t.model.prompt_learner.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def images(n=6):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def logits(t, x):
    t.set_model_mode("eval")
    return t.model_inference(x).float()


@pytest.mark.parametrize("trainer", ["CoOp", "CoCoOp", "KgCoOp", "ProGrad", "MaPLe", "IVLP", "PromptSRC"])
def test_published_checkpoint_gives_the_same_logits(trainer, demo_root, tmp_path):
    src = build(trainer, demo_root, tmp_path / "src")
    perturb(src, 7)
    x = images()
    expected = logits(src, x)
    path = dassl_save(tmp_path / "published", trainer, published_state(trainer, src))
    ckpt = load_checkpoint(str(path))
    assert isinstance(ckpt["scheduler"]["successor"], PickledRecord)   # read as a record, not rebuilt
    assert ckpt["scheduler"]["successor"].type == "torch.optim.lr_scheduler.CosineAnnealingLR"
    dst = build(trainer, demo_root, tmp_path / "dst", 2)               # other initial prompts
    assert not torch.allclose(logits(dst, x), expected)
    dst.load_model(str(tmp_path / "published"), epoch=EPOCH)
    assert dst.epoch == EPOCH - 1
    torch.testing.assert_close(logits(dst, x), expected, rtol=0, atol=1e-5)
    for k, v in src.model.prompt_learner.state_dict().items():
        if not k.startswith("gpa."):
            assert torch.equal(dst.model.prompt_learner.state_dict()[k], v), k


def test_released_coop_file_evaluated_from_the_command_line(demo_root, tmp_path, capsys):
    """fp16 tensors (PREC fp16), model-best and epoch files: train.py --eval-only --model-dir on
    the published tree gives the accuracy of the same prompts, on the new classes too."""
    src = build("CoOp", demo_root, tmp_path / "src")
    perturb(src, 11)
    with torch.no_grad():  # the values an fp16 file can hold
        src.model.prompt_learner.ctx.copy_(src.model.prompt_learner.ctx.half().float())
    dassl_save(tmp_path / "published", "CoOp", published_state("CoOp", src), half=True)
    src.set_model_mode("eval")
    expected = src.test()
    assert main(eval_args(demo_root, tmp_path / "eval", tmp_path / "published", "base")) == 0
    res = read_json(tmp_path / "eval" / "results.json")
    assert res["accuracy"] == pytest.approx(expected, abs=1e-9) and res["epoch"] == EPOCH
    assert "was written by the published code of this method" in (tmp_path / "eval" / "log.txt").read_text()
    assert main(eval_args(demo_root, tmp_path / "eval_new", tmp_path / "published", "new")) == 0
    assert read_json(tmp_path / "eval_new" / "results.json")["subsample"] == "new"


def eval_args(root, out, model_dir, subsample="all", trainer="CoOp"):
    return [str(a) for a in ("--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                             "--config-file", os.path.join(ROOT, "configs", "trainers", trainer, "demo_tiny.yaml"),
                             "--output-dir", out, "--eval-only", "--model-dir", model_dir, "--load-epoch", EPOCH,
                             "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", subsample, "VERBOSE", False)]


def test_checkpoint_naming_another_type_is_refused(tmp_path, demo_root, capsys):
    marker = tmp_path / "was_run"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    d = tmp_path / "published" / "prompt_learner"
    d.mkdir(parents=True)
    torch.save({"state_dict": {"ctx": torch.zeros(4, 128)}, "epoch": 1, "optimizer": None, "scheduler": Payload(),
                "val_result": None}, d / "model.pth.tar-1")
    with pytest.raises(UserError) as e:
        load_checkpoint(str(d / "model.pth.tar-1"))
    assert "Refusing to load checkpoint" in str(e.value) and "builtins.getattr" in str(e.value)
    assert "can run code" in str(e.value) and not marker.exists()


def test_truncated_published_file_says_so_and_what_to_do(tmp_path, demo_root, capsys):
    src = build("CoOp", demo_root, tmp_path / "src")
    path = dassl_save(tmp_path / "published", "CoOp", published_state("CoOp", src))
    path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()
    assert main(eval_args(demo_root, tmp_path / "eval", tmp_path / "published")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot read checkpoint {path} (RuntimeError") and "corrupt or truncated" in err
    assert "evaluate another epoch (--load-epoch)" in err and "delete" not in err


def test_published_checkpoint_of_another_method_does_not_fit(tmp_path, demo_root, capsys):
    """A CoCoOp file (meta-net) evaluated as CoOp: one paragraph naming what does not fit."""
    src = build("CoCoOp", demo_root, tmp_path / "src")
    dassl_save(tmp_path / "published", "CoCoOp", published_state("CoCoOp", src))
    dst = build("CoOp", demo_root, tmp_path / "dst", 1, "TRAINER.COOP.N_CTX", 4)
    with pytest.raises(UserError) as e:
        dst.load_model(str(tmp_path / "published"), epoch=EPOCH)
    assert "does not fit model 'prompt_learner'" in str(e.value) and "meta_net.linear1.weight" in str(e.value)
