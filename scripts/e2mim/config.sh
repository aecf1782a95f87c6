# E2MIM (ours; docs/METHOD.md): settings of the scripts in this folder (sourced by scripts/lib/protocols.sh).
# One cfg per protocol (configs/trainers/E2MIM/); CFG=<name> uses one for all.
TRAINER=E2MIM
CFG_B2N=vit_b16_base2new   # configs/trainers/$TRAINER/<cfg>.yaml per protocol; CFG=<name> overrides all three
CFG_XD=vit_b16_cross_dataset
CFG_FS=vit_b16_fewshot
ZERO_SHOT=0
TRAINER_OPTS=${TRAINER_OPTS:-}   # extra KEY VALUE pairs for every job of this method
