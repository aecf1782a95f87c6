"""CoOp: learnable context vectors in front of the class name (Zhou et al., IJCV 2022)."""
import torch.nn.functional as F
from e2mim_clip.prompt_trainer import PromptTrainer, context_node
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.trainer import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    node = "COOP"

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.COOP = context_node()  # N_CTX 16, CSC False, CTX_INIT "", PREC fp16, end

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output.float(), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)}
