"""KgCoOp (Yao et al., CVPR 2023): --checkout a plain checkout of htyao89/KgCoOp (its code in
KgCoOp/, its own Dassl in Dassl.ProGrad.pytorch/)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "htyao89/KgCoOp"
OPTS = ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "8.0",
        "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32", "DATASET.NUM_SHOTS", "8",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "8")
_RUN = dict(code="KgCoOp", dassl="Dassl.ProGrad.pytorch", opts=OPTS)
CASES = [
    # its code calls .cuda() unconditionally
    Case("kgcoop", "KgCoOp", "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml", shims={"cuda_shim": True}, **_RUN),
    Case("kgcoop_fp32teacher", "KgCoOp", "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml", of="kgcoop",
         shims={"cuda_shim": True}, diagnosis={"cuda_float": True},
         note="the published code encodes the hand-crafted teacher in fp16 even at PREC fp32", **_RUN),
]
