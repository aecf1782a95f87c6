"""DePT (Zhang et al., CVPR 2024) over CoOp, CoCoOp, KgCoOp and MaPLe: --checkout a plain
checkout of Koorye/DePT (runs on KaiyangZhou/Dassl.pytorch: --dassl; its trainers import
plotnine, which the published side's interpreter needs installed).

Each case trains the published ExtrasLinearProbe<base> trainer with its published config file
beside ours. The published code keeps the head in its whole model (film_lp_img, film_lp_text,
linear_probe_proj); ours holds it as model.head (cat_image, cat_text, linear).
"""
from e2mim_tools.parity.common import Case

CHECKOUT = "Koorye/DePT"
# the published head's parameter names -> ours (whole-model names on both sides)
HEAD = ((r"^film_lp_img\.", "head.cat_image."), (r"^film_lp_text\.", "head.cat_text."),
        (r"^linear_probe_proj\.", "head.linear."))
SMALL = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
CFG = "configs/trainers/{}/{}.yaml"
KG_CFG = CFG.format("ExtrasLinearProbeKgCoOp", "vit_b16_ep10_ctxv1_bs4_lr35")
MAPLE_CFG = CFG.format("ExtrasLinearProbeMaPLe", "vit_b16_c2_ep10_batch4_2ctx")

CASES = [
    Case("dept_coop", "ExtrasLinearProbeCoOp", CFG.format("ExtrasLinearProbeCoOp", "vit_b16_ep10_bs4_lr35"),
         ("TRAINER.COOP.PREC", "fp32") + SMALL, rename=HEAD),
    Case("dept_cocoop", "ExtrasLinearProbeCoCoOp",
         CFG.format("ExtrasLinearProbeCoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"),
         ("TRAINER.COCOOP.PREC", "fp32") + SMALL, rename=HEAD),
    # DePT's KgCoOp (as KgCoOp's own code) encodes its hand-crafted teacher with a second CLIP
    # moved by .cuda() and kept in fp16 whatever PREC says
    Case("dept_kgcoop", "ExtrasLinearProbeKgCoOp", KG_CFG, ("TRAINER.COOP.PREC", "fp32") + SMALL, rename=HEAD,
         shims={"cuda_shim": True}),
    Case("dept_kgcoop_fp32teacher", "ExtrasLinearProbeKgCoOp", KG_CFG, ("TRAINER.COOP.PREC", "fp32") + SMALL,
         rename=HEAD, of="dept_kgcoop", shims={"cuda_shim": True}, diagnosis={"cuda_float": True},
         note="the published code encodes the hand-crafted teacher in fp16 even at PREC fp32"),
    # DePT's MaPLe: MaPLe's published code (its own clip_maple package; text 512 / vision 768
    # hard-coded), the input-layer coupling left in fp16 at PREC fp32
    Case("dept_maple", "ExtrasLinearProbeMaPLe", MAPLE_CFG, ("TRAINER.MAPLE.PREC", "fp32") + SMALL, arch="b16w3",
         rename=HEAD + ((r"^prompt_learner\.compound_prompts_text\.(\d+)$", r"prompt_learner.text_deep.\1"),),
         shims={"float_modules": ["prompt_learner.proj"], "clip_packages": ["clip", "clip_maple"]}),
    Case("dept_maple_nohalf", "ExtrasLinearProbeMaPLe", MAPLE_CFG, ("TRAINER.MAPLE.PREC", "fp32") + SMALL,
         arch="b16w3", of="dept_maple", diagnosis={"no_half": True},
         shims={"float_modules": ["prompt_learner.proj"], "clip_packages": ["clip", "clip_maple"]},
         note="the published forward casts the prompts with .half()"),
]
