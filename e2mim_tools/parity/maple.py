"""MaPLe (Khattak et al., CVPR 2023): --checkout a plain checkout of
muzairkhattak/multimodal-prompt-learning (runs on KaiyangZhou/Dassl.pytorch: --dassl)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "muzairkhattak/multimodal-prompt-learning"
CONFIG = "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"
OPTS = ("TRAINER.MAPLE.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
CASES = [
    # the published code hard-codes text width 512 / vision width 768 (arch b16w3); it leaves the
    # input-layer coupling in fp16 even at PREC fp32, which F.linear cannot mix with fp32 prompts
    Case("maple", "MaPLe", CONFIG, OPTS, arch="b16w3", shims={"float_modules": ["prompt_learner.proj"]}),
    Case("maple_nohalf", "MaPLe", CONFIG, OPTS, arch="b16w3", of="maple", diagnosis={"no_half": True},
         note="the published forward casts the prompts with .half()"),
]
