"""MMRL (Guo & Gu, CVPR 2025): --checkout a plain checkout of yunncheng/MMRL (runs on
KaiyangZhou/Dassl.pytorch: --dassl)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "yunncheng/MMRL"
CONFIG = "configs/trainers/MMRL/vit_b16.yaml"
# b16w3 has 3 layers per tower: the tokens enter at layer 2 and are replaced at layer 3 (the
# published 6..12 of 12 would name no layer). REP_DIM and the tokens as published; the dataset
# (Caltech101) gets the authors' per-dataset REG_WEIGHT 0.5 on both sides.
OPTS = ("TRAINER.MMRL.PREC", "fp32", "TRAINER.MMRL.REP_LAYERS", "[2, 3]", "DATASET.NUM_SHOTS", "4",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
# its train.py reads the protocol from TASK (B2N: fused logits on base, class token on new); it
# encodes the zero-shot text features after an unconditional .cuda(); it keeps its learner under
# representation_learner and P_r in the image encoder
COMMON = dict(ref_opts=("TASK", "B2N"), arch="b16w3", shims={"cuda_shim": True},
              rename=((r"^representation_learner\.", "prompt_learner."),
                      (r"^image_encoder\.proj_rep$", "prompt_learner.proj_rep")))
CASES = [
    Case("mmrl", "MMRL", CONFIG, OPTS, **COMMON),
    # the few-shot file (REG_WEIGHT 0.5 in the file; Caltech101's table entry is 0.5 too) with the
    # tokens added at layer 2 only: layer 3 runs with them in place, nothing replaced
    Case("mmrl_one_layer", "MMRL", "configs/trainers/MMRL/vit_b16_few_shot.yaml",
         OPTS[:2] + ("TRAINER.MMRL.REP_LAYERS", "[2]") + OPTS[4:], **COMMON),
]
