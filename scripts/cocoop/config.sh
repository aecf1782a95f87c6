# CoCoOp (Zhou et al., CVPR 2022): settings of the scripts in this folder (sourced by scripts/lib/protocols.sh).
# CoCoOp's published setting: 4 context tokens from "a photo of a", batch 1, 10 epochs.
TRAINER=CoCoOp
CFG_B2N=vit_b16_c4_ep10_batch1_ctxv1   # configs/trainers/$TRAINER/<cfg>.yaml per protocol; CFG=<name> overrides all three
CFG_XD=vit_b16_c4_ep10_batch1_ctxv1
CFG_FS=vit_b16_c4_ep10_batch1_ctxv1
ZERO_SHOT=0
TRAINER_OPTS=${TRAINER_OPTS:-}   # extra KEY VALUE pairs for every job of this method
