"""ProGrad (Zhu et al., ICCV 2023): --checkout a plain checkout of BeierZhu/Prompt-align (its
code in ProGrad.public/, its own Dassl in Dassl.ProGrad.pytorch/)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "BeierZhu/Prompt-align"
# The published ProGrad logs xe_loss and kl_loss but no "loss"; our "loss" of ProGrad is the CE.
CASES = [Case("prograd", "ProGrad", "configs/trainers/ProGrad/rn50_ep100.yaml",
              ("LOSS.LAMBDA", "1.0", "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
               "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32", "DATASET.NUM_SHOTS", "4",
               "DATALOADER.TRAIN_X.BATCH_SIZE", "4"),
              code="ProGrad.public", dassl="Dassl.ProGrad.pytorch", shims={"cuda_shim": True}, loss_key="xe_loss")]
