"""PromptSRC (Khattak et al., ICCV 2023) and its repository's IVLP file: --checkout a plain
checkout of muzairkhattak/PromptSRC (--dassl: KaiyangZhou/Dassl.pytorch)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "muzairkhattak/PromptSRC"
CONFIG = "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"
IVLP_CONFIG = "configs/trainers/IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml"  # 4+4 tokens, depth 9
# GPA_MEAN 2 of 3 epochs (the published 15 of 20, scaled): with 15 the Gaussian weights of
# epochs 1-3 are ~1e-11, 4e-6 and 1, and the aggregate would be the last epoch.
OPTS = ("TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.GPA_MEAN", "2", "DATASET.NUM_SHOTS", "4",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
IVLP_OPTS = ("TRAINER.IVLP.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
HALF = "the published forward casts the prompts with .half()"
CASES = [
    # .cuda() unconditionally; the frozen zero-shot image encoder stays fp16 and the fixed
    # hand-crafted text embeddings are cast with .half() in the forward even at PREC fp32
    Case("promptsrc", "PromptSRC", CONFIG, OPTS, arch="b16w3",
         shims={"cuda_shim": True, "float_modules": ["prompt_learner.ZS_image_encoder"],
                "nohalf_attrs": ["prompt_learner.fixed_embeddings"]}),
    Case("promptsrc_nohalf", "PromptSRC", CONFIG, OPTS, arch="b16w3", of="promptsrc",
         shims={"cuda_shim": True}, diagnosis={"no_half": True}, note=HALF),
    Case("ivlp_src", "IVLP", IVLP_CONFIG, IVLP_OPTS, arch="b16w3"),
    Case("ivlp_src_nohalf", "IVLP", IVLP_CONFIG, IVLP_OPTS, arch="b16w3", of="ivlp_src", diagnosis={"no_half": True},
         note=HALF),
]
