"""CoCoOp (Zhou et al., CVPR 2022): --checkout a plain checkout of KaiyangZhou/CoOp."""
from e2mim_tools.parity.common import Case

CHECKOUT = "KaiyangZhou/CoOp"
CASES = [Case("cocoop", "CoCoOp", "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
              ("TRAINER.COCOOP.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"))]
