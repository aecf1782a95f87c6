"""CoPrompt (Roy & Etemad, ICLR 2024): --checkout a plain checkout of ShuvenduRoy/CoPrompt (runs
on KaiyangZhou/Dassl.pytorch: --dassl)."""
from e2mim_tools.parity.common import Case

CHECKOUT = "ShuvenduRoy/CoPrompt"
CONFIG = "configs/trainers/coprompt.yaml"
# The published file (two views per image, K_TRANSFORMS 2) at fp32; Caltech101 gets the authors'
# per-dataset settings on both sides (PROMPT_DEPTH 12: every layer of b16w3's 3, N_CTX 4, W 4.0).
OPTS = ("TRAINER.CoPrompt.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
# The published code hard-codes widths 512/768 (b16w3) and reads its checkout's
# gpt_file/caltech_prompt.json, as ours does through DESCRIPTIONS; the fixture's classes are ten
# Caltech101 classes that file names as their folders are named. The description drawn per step
# (random.randint in each trainer module) is fed the same on both sides.
COMMON = dict(arch="b16w3", classes=("accordion", "anchor", "ant", "barrel", "bass", "beaver", "binocular",
                                     "bonsai", "brain", "brontosaurus"),
              ours_opts=("TRAINER.COPROMPT.DESCRIPTIONS", "{code}/gpt_file"),
              draws={"randint": ("trainers.coprompt", "e2mim_trainers.coprompt")})
# the published RandAugment on both views; the c-th augmentation call starts from seed c on both
# sides (Dassl's class and ours), so both draw the same operations (Dassl's copy still uses np.int)
AUGMENTED = dict(COMMON, shims={"numpy_int": True},
                 draws=dict(COMMON["draws"], reseed=("dassl.data.transforms.randaugment.RandAugment",
                                                     "e2mim_engine.data.transforms.RandAugment")))
RANDAUGMENT = ("INPUT.TRANSFORMS", "['randaugment', 'normalize']")
NOHALF = "the published forward casts the prompts with .half() (MaPLe's CLIP)"
CASES = [
    # no augmentation (the tool's INPUT.TRANSFORMS ['normalize']): the teacher's view is the same image
    Case("coprompt", "CoPrompt", CONFIG, OPTS, **COMMON),
    Case("coprompt_nohalf", "CoPrompt", CONFIG, OPTS, of="coprompt", diagnosis={"no_half": True}, note=NOHALF,
         **COMMON),
    Case("coprompt_randaugment", "CoPrompt", CONFIG, OPTS + RANDAUGMENT, **AUGMENTED),
    Case("coprompt_randaugment_nohalf", "CoPrompt", CONFIG, OPTS + RANDAUGMENT, of="coprompt_randaugment",
         diagnosis={"no_half": True}, note=NOHALF, **AUGMENTED),
]
