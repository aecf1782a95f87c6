"""TCP (Yao et al., CVPR 2024): --checkout a plain checkout of
htyao89/Textual-based_Class-aware_prompt_tuning (runs on KaiyangZhou/Dassl.pytorch: --dassl).

Settings of the published code kept on both sides: its base-to-new file and script keys
(N_CTX 4, generic context, class token at the end), Adam with eps 1e-3 (the Dassl edit its
README requires: the adam_eps shim), the "t9" checkpoint (text width 512 and 9 layers, so its
class-aware tokens at text layer 8 are inserted). Its trainer also builds a second CLIP from
clip_text's own _download (download_modules shim) and calls .cuda() unconditionally.
"""
from e2mim_tools.parity.common import Case

CHECKOUT = "htyao89/Textual-based_Class-aware_prompt_tuning"
CONFIG = "configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml"
OPTS = ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0",
        "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32", "DATASET.NUM_SHOTS", "4",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
SHIMS = {"cuda_shim": True, "adam_eps": 1e-3, "download_modules": ["trainers.clip_text.clip"]}
CASES = [
    # as published at PREC fp32: the meta-net's precision follows TRAINER.COCOOP.PREC (default
    # fp16) and the hand-crafted features come from a second, fp16 CLIP
    Case("tcp", "TCP", CONFIG, OPTS, arch="t9", shims=SHIMS),
    Case("tcp_fp32", "TCP", CONFIG, OPTS + ("TRAINER.COCOOP.PREC", "fp32"), arch="t9", of="tcp", shims=SHIMS,
         diagnosis={"cuda_float": True},
         note="meta-net in fp32 (TRAINER.COCOOP.PREC fp32) and the hand-crafted features from an fp32 CLIP"),
]
