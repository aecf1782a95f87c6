# CoOp (Zhou et al., IJCV 2022): settings of the scripts in this folder (sourced by scripts/lib/protocols.sh).
# CoOp's context keys (TRAINER.COOP.*) come from the cfg; e.g. TRAINER_OPTS="TRAINER.COOP.N_CTX 4"
TRAINER=CoOp
CFG_B2N=vit_b16_ep50   # configs/trainers/$TRAINER/<cfg>.yaml per protocol; CFG=<name> overrides all three
CFG_XD=vit_b16_ep50
CFG_FS=vit_b16_ep50
ZERO_SHOT=0
TRAINER_OPTS=${TRAINER_OPTS:-}   # extra KEY VALUE pairs for every job of this method
