"""The benchmark protocols, defined once: datasets, seeds, shots, the output tree and the
methods table. The results tool reads them from here, and so do the bash scripts in
scripts/<method>/ (through ``python -m e2mim_tools.protocols shell METHOD``).

Adding a method to the scripts: one line in METHODS, then
``python -m e2mim_tools.protocols link-scripts`` makes its folder scripts/<folder>/ of links
to scripts/lib/protocol_script.sh (tests/test_scripts.py checks table and folders agree).

  python -m e2mim_tools.protocols methods        # the methods table
  python -m e2mim_tools.protocols shell coop base2new.sh   # what scripts/coop/base2new.sh starts from
"""
import argparse
import os
import shlex
import sys
from collections import OrderedDict
from typing import NamedTuple

# yaml name (configs/datasets/<name>.yaml) -> (DATASET.NAME, name in tables)
DATASETS = OrderedDict([
    ("imagenet", ("ImageNet", "ImageNet")),
    ("caltech101", ("Caltech101", "Caltech101")),
    ("oxford_pets", ("OxfordPets", "OxfordPets")),
    ("stanford_cars", ("StanfordCars", "StanfordCars")),
    ("oxford_flowers", ("OxfordFlowers", "Flowers102")),
    ("food101", ("Food101", "Food101")),
    ("fgvc_aircraft", ("FGVCAircraft", "FGVCAircraft")),
    ("sun397", ("SUN397", "SUN397")),
    ("dtd", ("DescribableTextures", "DTD")),
    ("eurosat", ("EuroSAT", "EuroSAT")),
    ("ucf101", ("UCF101", "UCF101")),
    ("imagenetv2", ("ImageNetV2", "ImageNet-V2")),
    ("imagenet_sketch", ("ImageNetSketch", "ImageNet-Sketch")),
    ("imagenet_a", ("ImageNetA", "ImageNet-A")),
    ("imagenet_r", ("ImageNetR", "ImageNet-R")),
])
BASE2NEW_DATASETS = list(DATASETS)[:11]   # also the few-shot datasets
XD_SOURCE = "imagenet"
XD_TARGETS = [d for d in BASE2NEW_DATASETS if d != XD_SOURCE]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
SHOTS = 16                                # base-to-new and cross-dataset training shots
FEWSHOT_SHOTS = [1, 2, 4, 8, 16]
DEFAULT_SEEDS = [1, 2, 3]

# The output tree the scripts write (below OUTPUT) and the results tool expects; {source}
# is the cross-dataset training set, {dataset} for it in the results tool.
LAYOUTS = {
    "base2new": "base2new/{phase}/{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}",  # phase: train_base | test_new
    "xd_source": "{dataset}/{trainer}/{cfg}_{shots}shots/seed{seed}",
    "xd": "evaluation/{trainer}/{cfg}_{shots}shots/{dataset}/seed{seed}",
    "fewshot": "fewshot/{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}",          # zero-shot CLIP: shots_0
}


class Method(NamedTuple):
    folder: str        # scripts/<folder>/
    trainer: str       # --trainer, and configs/trainers/<trainer>/
    cfg_b2n: str       # configs/trainers/<trainer>/<cfg>.yaml per protocol (CFG=<name> overrides all three)
    cfg_xd: str
    cfg_fs: str
    zero_shot: bool    # nothing is trained: "train" scripts evaluate, few-shot runs go to shots_0


# One line per method; the order is also the row order of the results tables (after the
# published baselines, see e2mim_tools.published).
METHODS = [
    # Hand-crafted prompts; TRAINER_OPTS="TRAINER.ZSCLIP.ENSEMBLE True" for the template ensemble.
    Method("zsclip", "ZeroshotCLIP", "vit_b16", "vit_b16", "vit_b16", True),
    # CoOp (Zhou et al., IJCV 2022); context keys TRAINER.COOP.* from the cfg.
    Method("coop", "CoOp", "vit_b16_ep50", "vit_b16_ep50", "vit_b16_ep50", False),
    # CoCoOp (Zhou et al., CVPR 2022): 4 context tokens from "a photo of a", batch 1, 10 epochs.
    Method("cocoop", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "vit_b16_c4_ep10_batch1_ctxv1",
           "vit_b16_c4_ep10_batch1_ctxv1", False),
    # ProGrad (Zhu et al., ICCV 2023): N_CTX 16 from the template's words, LAMBDA 1.0, T 1.0, 100 epochs.
    Method("prograd", "ProGrad", "vit_b16_ep100", "vit_b16_ep100", "vit_b16_ep100", False),
    # KgCoOp (Yao et al., CVPR 2023): N_CTX 4, CTX_INIT "a photo of a", W 8.0, 100 epochs.
    Method("kgcoop", "KgCoOp", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", False),
    # IVLP (deep independent V-L prompts; PromptSRC's baseline): 4+4 tokens, depth 9, 20 epochs.
    Method("ivlp", "IVLP", "vit_b16_c2_ep20_batch4_4+4ctx", "vit_b16_c2_ep20_batch4_4+4ctx",
           "vit_b16_c2_ep20_batch4_4+4ctx", False),
    # MaPLe (Khattak et al., CVPR 2023): 2 tokens coupled per layer, depth 9 (3 cross-dataset).
    Method("maple", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
           "vit_b16_c2_ep5_batch4_2ctx", False),
    # PromptSRC (Khattak et al., ICCV 2023): IVLP 4+4, depth 9, L1/KL self-regulation, Gaussian aggregation.
    Method("promptsrc", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
           "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", "vit_b16_c2_ep50_batch4_4+4ctx_few_shot", False),
    # TCP (Yao et al., CVPR 2024): KgCoOp + class-aware tokens from the hand-crafted class features at
    # text layer 8; N_CTX 4, random init, Adam (eps 1e-3), 50 epochs. The authors ship one yaml (base-to-new).
    Method("tcp", "TCP", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", "vit_b16_ep100_ctxv1", False),
    # MMRL (Guo & Gu, CVPR 2025): 5 representation tokens in layers 6-12, 10 epochs (few-shot 50,
    # cross-dataset 1); the authors run ImageNet with vit_b16_imagenet (5 epochs): CFG=vit_b16_imagenet.
    Method("mmrl", "MMRL", "vit_b16", "vit_b16_cross_datasets", "vit_b16_few_shot", False),
    # CoPrompt (Roy & Etemad, ICLR 2024): MaPLe + adapters + consistency with the frozen CLIP on a
    # second RandAugment view and LLM class descriptions (TRAINER.COPROMPT.DESCRIPTIONS), 8 epochs,
    # the authors' per-dataset settings. The authors ship one yaml (base-to-new).
    Method("coprompt", "CoPrompt", "coprompt", "coprompt", "coprompt", False),
    # E2MIM (ours; docs/METHOD.md): one cfg per protocol.
    Method("e2mim", "E2MIM", "vit_b16_base2new", "vit_b16_cross_dataset", "vit_b16_fewshot", False),
    # DePT (Zhang et al., CVPR 2024) over CoOp, CoCoOp, KgCoOp, MaPLe: the CAT head, 10 epochs;
    # one published file per base for every protocol (the authors' folders coop_dept, ...).
    Method("coop_dept", "ExtrasLinearProbeCoOp", *["vit_b16_ep10_bs4_lr35"] * 3, False),
    Method("cocoop_dept", "ExtrasLinearProbeCoCoOp", *["vit_b16_c4_ep10_batch1_ctxv1"] * 3, False),
    Method("kgcoop_dept", "ExtrasLinearProbeKgCoOp", *["vit_b16_ep10_ctxv1_bs4_lr35"] * 3, False),
    Method("maple_dept", "ExtrasLinearProbeMaPLe", *["vit_b16_c2_ep10_batch4_2ctx"] * 3, False),
]

# The scripts users type in scripts/<method>/ -> the function of scripts/lib/protocols.sh
# each runs. Every one is a link to scripts/lib/protocol_script.sh.
SCRIPTS = OrderedDict([
    ("base2new.sh", "base2new_all"),       # the whole base-to-new protocol: every dataset x seed, train then test
    ("base2new_train.sh", "b2n_train"),    # DATASET SEED: train on the base classes
    ("base2new_test.sh", "b2n_test"),      # DATASET SEED: evaluate the base-trained model on the new classes
    ("xd.sh", "xd_all"),                   # cross-dataset: train on XD_SOURCE per seed, evaluate on XD_DATASETS
    ("dg.sh", "dg_all"),                   # domain generalization: the XD_SOURCE model on DG_DATASETS
    ("xd_train.sh", "xd_train"),           # SEED: train on all classes of XD_SOURCE
    ("xd_test.sh", "xd_test"),             # DATASET SEED: evaluate the XD_SOURCE model on DATASET
    ("fewshot.sh", "fewshot_all"),         # the whole few-shot protocol: every dataset x SHOTS_LIST x seed
    ("fewshot_train.sh", "fewshot_job"),   # DATASET SHOTS SEED: train on all classes with SHOTS per class
])
SCRIPT_TARGET = os.path.join("..", "lib", "protocol_script.sh")


def method(folder):
    for m in METHODS:
        if m.folder == folder:
            return m
    raise KeyError(f"no method {folder!r} in the methods table of e2mim_tools/protocols.py "
                   f"(known: {', '.join(m.folder for m in METHODS)})")


def display_name(dataset):
    return DATASETS[dataset][1] if dataset in DATASETS else dataset


def dataset_order(names):
    """Known datasets in benchmark order, then the others alphabetically."""
    known = [d for d in DATASETS if d in names]
    return known + sorted(n for n in names if n not in DATASETS)


def _words(values):
    return " ".join(map(str, values))


def shell(m, script=None):
    """Bash assignments and folder functions for one method's scripts (read through eval
    by scripts/lib/protocols.sh), with JOB, the function ``script`` runs. The folder functions are LAYOUTS with the scripts' variables
    and positional arguments filled in, so the tree is spelled only above."""
    values = OrderedDict([
        ("TRAINER", m.trainer), ("CFG_B2N", m.cfg_b2n), ("CFG_XD", m.cfg_xd), ("CFG_FS", m.cfg_fs),
        ("ZERO_SHOT", int(m.zero_shot)),
        ("DEFAULT_DATASETS", _words(BASE2NEW_DATASETS)), ("DEFAULT_XD_DATASETS", _words(XD_TARGETS)),
        ("DEFAULT_DG_DATASETS", _words(DG_TARGETS)), ("DEFAULT_XD_SOURCE", XD_SOURCE),
        ("DEFAULT_SEEDS", _words(DEFAULT_SEEDS)), ("DEFAULT_SHOTS", SHOTS),
        ("DEFAULT_SHOTS_LIST", _words(FEWSHOT_SHOTS)),
    ])
    if script is not None:
        if script not in SCRIPTS:
            raise KeyError(f"no protocol script {script!r} (known: {', '.join(SCRIPTS)})")
        values["JOB"] = SCRIPTS[script]
    lines = [f"{k}={shlex.quote(str(v))}" for k, v in values.items()]
    common = {"trainer": "${TRAINER}", "shots": "${SHOTS}"}
    functions = [  # name, layout, fields, usage
        ("b2n_dir", "base2new", dict(common, phase="$1", dataset="$2", cfg="${CFG_B2N}", seed="$3"),
         "PHASE DATASET SEED"),
        ("xd_dir", "xd_source", dict(common, dataset="${XD_SOURCE}", cfg="${CFG_XD}", seed="$1"), "SEED"),
        ("eval_dir", "xd", dict(common, dataset="$1", cfg="${CFG_XD}", seed="$2"), "DATASET SEED"),
        ("fewshot_dir", "fewshot", dict(common, dataset="$1", shots="$2", cfg="${CFG_FS}", seed="$3"),
         "DATASET SHOTS SEED"),
    ]
    for name, layout, fields, usage in functions:
        lines.append(f'{name}() {{ echo "$OUTPUT/{LAYOUTS[layout].format(**fields)}"; }}  # {usage}')
    return "\n".join(lines) + "\n"


def link_scripts(scripts_dir):
    """Make scripts/<folder>/<script> links for every method of the table (existing ones kept)."""
    made = []
    for m in METHODS:
        d = os.path.join(scripts_dir, m.folder)
        os.makedirs(d, exist_ok=True)
        for name in SCRIPTS:
            path = os.path.join(d, name)
            if not os.path.lexists(path):
                os.symlink(SCRIPT_TARGET, path)
                made.append(path)
    return made


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="the methods table")
    sh = sub.add_parser("shell", help="bash settings of one method's scripts")
    sh.add_argument("folder", help="the method's folder name in scripts/")
    sh.add_argument("script", nargs="?", help="the script's file name (adds JOB, the function it runs)")
    ln = sub.add_parser("link-scripts", help="make the script links of every method in the table")
    ln.add_argument("--scripts-dir", default="scripts")
    a = p.parse_args(argv)
    if a.command == "methods":
        for m in METHODS:
            print(f"{m.folder:8} {m.trainer:13} b2n={m.cfg_b2n} xd={m.cfg_xd} fewshot={m.cfg_fs}"
                  + (" (zero-shot)" if m.zero_shot else ""))
    elif a.command == "shell":
        try:
            sys.stdout.write(shell(method(a.folder), a.script))
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 2
    else:
        for path in link_scripts(a.scripts_dir):
            print(f"linked {path} -> {SCRIPT_TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
