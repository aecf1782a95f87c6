# zero-shot CLIP with hand-crafted prompts (nothing is trained): settings of the scripts in this folder (sourced by scripts/lib/protocols.sh).
# Evaluation only: "train" scripts evaluate on the training side (base classes, the source
# dataset); few-shot runs go to shots_0. TRAINER_OPTS="TRAINER.ZSCLIP.ENSEMBLE True" for the template ensemble (ZeroshotCLIP2).
TRAINER=ZeroshotCLIP
CFG_B2N=vit_b16   # configs/trainers/$TRAINER/<cfg>.yaml per protocol; CFG=<name> overrides all three
CFG_XD=vit_b16
CFG_FS=vit_b16
ZERO_SHOT=1
TRAINER_OPTS=${TRAINER_OPTS:-}   # extra KEY VALUE pairs for every job of this method
