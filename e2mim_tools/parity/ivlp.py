"""IVLP (independent vision-language prompting, as in MaPLe's repository): --checkout a plain
checkout of muzairkhattak/multimodal-prompt-learning (--dassl: KaiyangZhou/Dassl.pytorch).
PromptSRC's IVLP file is checked by the promptsrc module (another checkout)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "muzairkhattak/multimodal-prompt-learning"
OPTS = ("TRAINER.IVLP.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
FILES = {"ivlp": "configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",  # 2+2 tokens, depth 12
         "ivlp_lp": "configs/trainers/IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml"}  # text only
CASES = []
for name, config in FILES.items():
    CASES += [Case(name, "IVLP", config, OPTS, arch="b16w3"),
              Case(name + "_nohalf", "IVLP", config, OPTS, arch="b16w3", of=name, diagnosis={"no_half": True},
                   note="the published forward casts the prompts with .half()")]
