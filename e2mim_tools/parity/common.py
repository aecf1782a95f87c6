"""What every method's parity check shares: the case record, the fixture, the two runs, the
comparison and the table. Imports only the standard library at module level (the package is
also imported by the published side's interpreter, through hooks.py).
"""
import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 3
SEED = 1
# Deterministic, small, identical on both sides: fp32 is set per method (its PREC key), no
# workers, no augmentation, batches in file order, 3 epochs on the base classes.
DETERMINISTIC = ("DATALOADER.NUM_WORKERS", "0", "TRAIN.PRINT_FREQ", "1", "INPUT.TRANSFORMS", "['normalize']",
                 "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler", "OPTIM.MAX_EPOCH", str(EPOCHS))
DATASET_CONFIG = "configs/datasets/caltech101.yaml"  # both codes ship this file with this content

# Random OpenAI-format CLIPs (fp16 state dicts, as OpenAI's files): embed_dim, image_resolution,
# vision_layers, vision_width, vision_patch_size, context_length, vocab_size, transformer_width,
# transformer_heads, transformer_layers. "b16w3" has ViT-B/16's widths (text 512, vision 768),
# which some published code hard-codes, with 3 layers per tower; "t9" a tiny image tower and a
# text tower of width 512 with 9 layers (TCP inserts its class-aware tokens at text layer 8 and
# hard-codes width 512).
ARCHS = {"tiny": (128, 224, 2, 128, 16, 77, 49408, 128, 2, 2),
         "b16w3": (512, 224, 3, 768, 16, 77, 49408, 512, 8, 3),
         "t9": (128, 224, 2, 128, 32, 77, 49408, 512, 8, 9)}
CLASSES = ["accordion", "airplanes", "anchor", "ant", "barrel", "bass", "beaver", "binocular", "bonsai", "brain"]
SPLIT = {"train": range(0, 12), "val": range(12, 16), "test": range(16, 24)}  # image indices per class


@dataclass(frozen=True)
class Case:
    """One side-by-side run. A method module lists its cases in CASES."""
    name: str                   # tag of the run, e.g. "maple"; diagnosis cases "maple_nohalf"
    trainer: str                # the published --trainer
    config: str                 # the published config file, relative to `code` (both runs read it)
    opts: Tuple[str, ...] = ()  # KEY VALUE pairs of both runs (precision fp32, shots, batch size)
    ref_opts: Tuple[str, ...] = ()  # KEY VALUE pairs of the published run only (keys ours does not have)
    ours: str = ""              # our --trainer (default: trainer)
    code: str = ""              # folder of the checkout holding the published train.py
    dassl: str = ""             # folder of the checkout holding a bundled Dassl (else --dassl / installed)
    arch: str = "tiny"          # fixture checkpoint (ARCHS)
    shims: dict = field(default_factory=dict)      # published side: cuda_shim, float_modules, nohalf_attrs
    diagnosis: dict = field(default_factory=dict)  # published side only: no_half, cuda_float
    of: str = ""                # diagnosis case: the case whose run of ours and initial tensors it reuses
    rename: Tuple[Tuple[str, str], ...] = ()      # published -> our parameter names, before the trainer's
    loss_key: str = "loss"      # the published loss entry compared with our "loss"
    note: str = ""
    ours_opts: Tuple[str, ...] = ()  # KEY VALUE pairs of our run only ("{code}": the checkout's code folder)
    classes: Tuple[str, ...] = ()    # the fixture's classes (default CLASSES), e.g. names a data file covers
    # Random per-step choices made identical on both sides (hooks.py):
    #   "randint": (published module, our module): each side's random.randint in that module
    #              returns the values of one list drawn here (seeded), in order;
    #   "reseed": (published class, our class), "module.Class": every call of the class's
    #             instances (a transform) first seeds Python's and numpy's generators with the
    #             call's number, so the c-th augmentation draws the same on both sides.
    draws: dict = field(default_factory=dict)

    @property
    def our_trainer(self):
        return self.ours or self.trainer


# ---- fixture -----------------------------------------------------------------------------
def make_checkpoint(arch, path):
    """A random CLIP of ARCHS[arch], saved as OpenAI's state dict (fp16), seeded."""
    import torch
    from clip.model import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIP(*ARCHS[arch])
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)


def make_images(root, classes=CLASSES, split_ids=SPLIT):
    """A Caltech101-layout folder root/caltech-101 (``classes`` of coloured noise, the image
    indices of ``split_ids`` per class) and its split file in CoOp's format, so both codes read
    the same train/val/test lists. Also the Dassl plugin's parity fixture (e2mim_tools.dassl_parity)."""
    import numpy as np
    from PIL import Image

    data = os.path.join(root, "caltech-101")
    split = {k: [] for k in split_ids}
    for label, name in enumerate(classes):
        folder = os.path.join(data, "101_ObjectCategories", name)
        os.makedirs(folder, exist_ok=True)
        color = np.array([(label * 73) % 256, (label * 151) % 256, (label * 37 + 90) % 256])
        for part, ks in split_ids.items():
            for k in ks:
                rel = f"{name}/image_{k + 1:04d}.jpg"
                noise = np.random.RandomState(label * 100 + k).randn(64, 64, 3) * 40
                Image.fromarray(np.clip(color + noise, 0, 255).astype("uint8")).save(
                    os.path.join(data, "101_ObjectCategories", rel), quality=90)
                split[part].append([rel, label, name])
    with open(os.path.join(data, "split_zhou_Caltech101.json"), "w") as f:
        json.dump(split, f)


def fixture(out, arch, classes=()):
    """out/fixture/{<arch>.pt, images/} made once and reused (images_<first class>/ for a case's
    own classes)."""
    base = os.path.join(out, "fixture")
    os.makedirs(base, exist_ok=True)
    ckpt = os.path.join(base, f"{arch}.pt")
    if not os.path.exists(ckpt):
        make_checkpoint(arch, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)
    images = os.path.join(base, f"images_{classes[0]}" if classes else "images")
    if not os.path.exists(os.path.join(images, "caltech-101", "split_zhou_Caltech101.json")):
        shutil.rmtree(images, ignore_errors=True)
        make_images(images, list(classes) or CLASSES)
    return ckpt, images


DRAWS = 1000  # fed values per run (far more than the steps of EPOCHS on the fixture)


def draw_settings(case, side):
    """The settings of ``side`` ("ref" or "ours") that make the case's random choices identical."""
    out = {}
    if "randint" in case.draws:
        import random
        rng = random.Random(SEED)
        out["randint"] = {"module": case.draws["randint"][0 if side == "ref" else 1],
                          "values": [rng.random() for _ in range(DRAWS)]}
    if "reseed" in case.draws:
        out["reseed"] = case.draws["reseed"][0 if side == "ref" else 1]
    return out


# ---- the runs ----------------------------------------------------------------------------
def side_env(settings, pythonpath=()):
    env = dict(os.environ, E2MIM_PARITY=json.dumps(settings), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(list(pythonpath) + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_logged(cmd, env, cwd, log):
    with open(log, "w") as f:
        r = subprocess.run(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        with open(log) as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"{os.path.basename(log)}: exit {r.returncode}; log {log}:\n{tail}")


def train_and_eval(side, case, paths, settings, cmd, cwd, pythonpath=()):
    """Train on the base classes (losses, initial tensors, base logits recorded), then evaluate
    the last epoch on the new classes (new logits recorded). Each run gets a fresh data copy."""
    d = paths["run"]
    data = os.path.join(d, "data")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(paths["images"], data)
    common = ["--root", data, "--seed", str(SEED), "--trainer", case.trainer if side == "ref" else case.our_trainer,
              "--dataset-config-file", DATASET_CONFIG, "--config-file", paths["config"]]
    if side == "ours":
        common += ["--backbone", paths["ckpt"]]
    own = case.ref_opts if side == "ref" else [o.format(code=paths["code"]) for o in case.ours_opts]
    opts = list(DETERMINISTIC) + list(case.opts) + list(own)
    train = dict(settings, loss_log=os.path.join(d, "loss.jsonl"), eval_log=os.path.join(d, "base.pt"))
    run_logged(cmd + common + ["--output-dir", os.path.join(d, "train")] + opts + ["DATASET.SUBSAMPLE_CLASSES", "base"],
               side_env(train, pythonpath), cwd, os.path.join(d, "train.log"))
    evaluate = {k: v for k, v in settings.items() if k not in ("init_dump", "init_load")}
    evaluate["eval_log"] = os.path.join(d, "new.pt")
    run_logged(cmd + common + ["--output-dir", os.path.join(d, "new_eval"), "--model-dir", os.path.join(d, "train"),
                               "--load-epoch", str(EPOCHS), "--eval-only"] + opts + ["DATASET.SUBSAMPLE_CLASSES", "new"],
               side_env(evaluate, pythonpath), cwd, os.path.join(d, "new.log"))


def run_case(case, checkout, out, ref_python, dassl="", own_init=False):
    """Both sides of a case (a diagnosis case: the published side only), then compare().
    own_init: our run keeps the initial tensors it drew (a check of our initialisation: with
    the same draws in the same order it matches the published run without loading them)."""
    ckpt, images = fixture(out, case.arch, case.classes)
    code = os.path.join(checkout, case.code)
    config = os.path.join(code, case.config)
    if not os.path.isfile(os.path.join(code, "train.py")) or not os.path.isfile(config):
        raise RuntimeError(f"{case.name}: {code} is not the expected checkout (need train.py and {case.config}).")
    pythonpath = [code] + [os.path.join(checkout, case.dassl) if case.dassl else dassl] + [ROOT]
    pythonpath = [p for p in pythonpath if p]
    base = os.path.join(out, case.name)
    ref_paths = dict(run=os.path.join(base, "ref"), images=images, ckpt=ckpt, config=config, code=code)
    ref_settings = dict(ckpt=ckpt, **case.shims, **case.diagnosis, **draw_settings(case, "ref"))
    if case.of:  # the diagnosis run starts from the tensors of the case it diagnoses
        ref_settings["init_load"] = os.path.join(out, case.of, "init_ref.pt")
    else:
        ref_settings["init_dump"] = os.path.join(base, "init_ref.pt")
    train_and_eval("ref", case, ref_paths, ref_settings, [ref_python, "-m", "e2mim_tools.parity.ref_side"], code,
                   pythonpath)
    if not case.of:
        ours_paths = dict(ref_paths, run=os.path.join(base, "ours"))
        ours_settings = dict(trainer=case.our_trainer, rename=list(case.rename), **draw_settings(case, "ours"),
                             init_dump=os.path.join(base, "init_ours.pt"),
                             init_load="" if own_init else os.path.join(base, "init_ref.pt"))
        train_and_eval("ours", case, ours_paths, ours_settings, [sys.executable, "-m", "e2mim_tools.parity.ours_side"],
                       ROOT)
    return compare_runs(case, base, os.path.join(out, case.of or case.name))


# ---- comparison --------------------------------------------------------------------------
def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def loss_differences(ref, ours, loss_key="loss"):
    """Per-batch loss dicts of both codes -> the differences of the loss (the published
    ``loss_key`` against our "loss") and of every other entry both log, except accuracies."""
    n = min(len(ref), len(ours))
    out = {"batches": [len(ref), len(ours)]}
    if not n:
        return out
    d = [abs(ref[i][loss_key] - ours[i]["loss"]) for i in range(n)]
    out["max_loss_diff"] = max(d)
    out["argmax_batch"] = d.index(max(d)) + 1
    out["first_loss"] = [ref[0][loss_key], ours[0]["loss"]]
    for k in ref[0]:
        if k not in ("loss", "acc", loss_key) and k in ours[0]:
            out[f"max_{k}_diff"] = max(abs(ref[i][k] - ours[i][k]) for i in range(n))
    return out


def logit_differences(ref, ours):
    """{"logits", "labels"} of both codes' test() -> max |difference| and same predictions."""
    if ref["logits"].shape != ours["logits"].shape or not bool((ref["labels"] == ours["labels"]).all()):
        return {"comparable": False, "shapes": [list(ref["logits"].shape), list(ours["logits"].shape)]}
    return {"max_logit_diff": float((ref["logits"] - ours["logits"]).abs().max()),
            "max_abs_logit": float(ref["logits"].abs().max()),
            "same_predictions": bool((ref["logits"].argmax(1) == ours["logits"].argmax(1)).all())}


def tensor_differences(ref, ours):
    """Two name -> tensor dicts: largest difference over the names both hold (with the same
    shape), whether they are equal, and the names only ours holds."""
    common = [k for k in ours if k in ref and ref[k].shape == ours[k].shape]
    diffs = {k: float((ref[k].float() - ours[k].float()).abs().max()) for k in common}
    return {"compared": len(common), "max_diff": max(diffs.values()) if diffs else None,
            "identical": bool(common) and all(v == 0 for v in diffs.values()),
            "only_ours": sorted(k for k in ours if k not in common)}


def final_tensors(run_dir):
    """Name -> tensor of the last epoch's checkpoints in run_dir/train (every model folder)."""
    import torch

    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "train", "*", f"model.pth.tar-{EPOCHS}"))):
        sd = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        out.update({(os.path.basename(os.path.dirname(path)), k): v for k, v in sd.items()})
    return out


def compare_runs(case, ref_base, ours_base):
    """The JSON record of a case: losses, base/new logits, initial and final tensors."""
    import torch

    from e2mim_tools.parity.ours_side import published_format, renamer

    ref_dir, ours_dir = os.path.join(ref_base, "ref"), os.path.join(ours_base, "ours")
    rec = {"case": case.name, "of": case.of}
    rec.update(loss_differences(read_jsonl(os.path.join(ref_dir, "loss.jsonl")),
                                read_jsonl(os.path.join(ours_dir, "loss.jsonl")), case.loss_key))
    for split in ("base", "new"):
        a, b = os.path.join(ref_dir, f"{split}.pt"), os.path.join(ours_dir, f"{split}.pt")
        if os.path.exists(a) and os.path.exists(b):
            rec[split] = logit_differences(torch.load(a), torch.load(b))
    rename = renamer(case.our_trainer, case.rename)
    init_ref, init_ours = os.path.join(ours_base, "init_ref.pt"), os.path.join(ours_base, "init_ours.pt")
    if os.path.exists(init_ref) and os.path.exists(init_ours):
        # did our code draw the same initial tensors itself? (they are loaded either way)
        rec["own_init"] = tensor_differences(rename(torch.load(init_ref)), torch.load(init_ours))
    fmt = published_format(case.our_trainer)
    ref_final = {k[1]: v for k, v in final_tensors(ref_dir).items()}
    ref_final = fmt.our_state_dict(ref_final) if fmt is not None else ref_final
    ours_final = {k[1]: v for k, v in final_tensors(ours_dir).items()}
    if ref_final and ours_final:
        rec["final"] = tensor_differences(ref_final, ours_final)
    return rec


# ---- reporting ---------------------------------------------------------------------------
def fmt_num(x):
    return "—" if x is None else f"{x:.1e}"


def table(records):
    """Markdown table of case records (compare_runs)."""
    lines = ["| case | batches | max loss diff | max new-class logit diff | same new predictions | "
             "own init identical | max final tensor diff |", "|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['case']} | failed: {r['error'].splitlines()[0]} | | | | | |")
            continue
        new, init, final = r.get("new", {}), r.get("own_init", {}), r.get("final", {})
        name = r["case"] + (f" (vs ours of {r['of']})" if r.get("of") else "")
        lines.append(f"| {name} | {r['batches'][0]}/{r['batches'][1]} | {fmt_num(r.get('max_loss_diff'))} | "
                     f"{fmt_num(new.get('max_logit_diff'))} | {new.get('same_predictions', '—')} | "
                     f"{init.get('identical', '—')} | {fmt_num(final.get('max_diff'))} |")
    return "\n".join(lines)


def per_batch(case, ref_base, ours_base):
    """Lines of the per-batch losses of both codes."""
    ref = read_jsonl(os.path.join(ref_base, "ref", "loss.jsonl"))
    ours = read_jsonl(os.path.join(ours_base, "ours", "loss.jsonl"))
    return [f"  {i + 1:3d} published {r[case.loss_key]:.7f} ours {o['loss']:.7f} diff {r[case.loss_key] - o['loss']:+.2e}"
            for i, (r, o) in enumerate(zip(ref, ours))]
