# KgCoOp (Yao et al., CVPR 2023): settings of the scripts in this folder (sourced by scripts/lib/protocols.sh).
# KgCoOp's published setting: TRAINER.KGCOOP.{N_CTX 4, CTX_INIT "a photo of a", W 8.0}, 100 epochs.
TRAINER=KgCoOp
CFG_B2N=vit_b16_ep100_ctxv1   # configs/trainers/$TRAINER/<cfg>.yaml per protocol; CFG=<name> overrides all three
CFG_XD=vit_b16_ep100_ctxv1
CFG_FS=vit_b16_ep100_ctxv1
ZERO_SHOT=0
TRAINER_OPTS=${TRAINER_OPTS:-}   # extra KEY VALUE pairs for every job of this method
