"""Parity of the E2MIM plugin (e2mim_dassl) inside a Dassl checkout with this toolbox's trainer.

A developer command, not part of the test suite::

    python -m e2mim_tools.dassl_parity --checkout ~/src/CoOp --dassl ~/src/Dassl.pytorch \\
        [--work /tmp/e2mim-dassl-parity] [--python /path/to/venv/bin/python]

``--checkout`` is a plain checkout of a Dassl project (KaiyangZhou/CoOp; MaPLe's, PromptSRC's or
KgCoOp's repository likewise), ``--dassl`` the Dassl.pytorch it runs on (KgCoOp bundles its own),
``--python`` an interpreter that can import torch, Dassl's requirements and this package (default:
this one). The command writes, under ``--work``: a tiny random CLIP checkpoint (OpenAI's state-dict
format, fp16 as OpenAI's files), a Caltech101-layout image folder with a split file, and
``dassl_train.py``, the checkout's train.py with the two lines of README.md ("E2MIM in your CoOp/MaPLe
fork") and the shims below. It then trains E2MIM with configs/trainers/E2MIM/vit_b16_base2new.yaml
(fp32, few steps, no augmentation, no workers) on the base classes and evaluates the last epoch on
the new classes, once with the checkout's train.py and once with this toolbox's, and compares the
per-batch losses and the test logits. Both start from the same MI-estimator weights (drawn by the
Dassl run, loaded into the toolbox's: the two engines consume the global RNG differently before the
estimator is built); the prompt's initial context is compared, not copied. Prints one JSON line and
the per-batch losses; exit status 1 when a difference exceeds --tol.

dassl_train.py applies the two shims the published Dassl needs on current PyTorch
(e2mim_dassl.dassl_shims).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["accordion", "airplanes", "anchor", "ant", "barrel", "bass"]
SPLIT = {"train": range(0, 10), "val": range(10, 12), "test": range(12, 16)}  # images per class
OPTS = ["TRAINER.E2MIM.PREC", "fp32", "DATASET.NUM_SHOTS", "8", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "DATALOADER.TEST.BATCH_SIZE", "50", "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", "3",
        "INPUT.TRANSFORMS", "['normalize']", "TRAIN.PRINT_FREQ", "1"]
EPOCHS = 3
PROBE, PROBE_INIT = "E2MIM_PROBE", "E2MIM_PROBE_INIT"


# ---- inside the two training processes -----------------------------------------------------
def install_probe():
    """With $E2MIM_PROBE=PREFIX: E2MIM's steps append their full-precision loss dicts to
    PREFIX.loss and its test logits go to PREFIX.logits.pt; after build_model the registered
    models' initial tensors are written to $E2MIM_PROBE_INIT, or, when that file exists, loaded
    from it (the differences before loading go to PREFIX.init.json). Hooks the method mixin, so
    the same probe serves both engines."""
    prefix = os.environ.get(PROBE)
    if not prefix:
        return
    import torch
    from e2mim_trainers.e2mim import E2MIMMethod

    step, infer, build = E2MIMMethod.forward_backward, E2MIMMethod.model_inference, E2MIMMethod.build_model
    logits = []

    def forward_backward(self, batch):
        out = step(self, batch)
        with open(prefix + ".loss", "a") as f:
            f.write(json.dumps({k: float(v) for k, v in out.items()}) + "\n")
        return out

    def model_inference(self, x):
        y = infer(self, x)
        logits.append(y.detach().float().cpu())
        torch.save(torch.cat(logits), prefix + ".logits.pt")
        return y

    def build_model(self):
        build(self)
        path = os.environ.get(PROBE_INIT)
        if not path:
            return
        if not os.path.exists(path):
            torch.save({n: m.state_dict() for n, m in self._models.items()}, path)
            return
        saved, diffs = torch.load(path), {}
        for name, model in self._models.items():
            own = model.state_dict()
            diffs.update({f"{name}.{k}": float((own[k].float() - v.float()).abs().max())
                          for k, v in saved[name].items()})
            model.load_state_dict(saved[name])
        with open(prefix + ".init.json", "w") as f:
            json.dump(diffs, f)

    E2MIMMethod.forward_backward, E2MIMMethod.model_inference = forward_backward, model_inference
    E2MIMMethod.build_model = build_model


def run_toolbox(argv):
    """The toolbox's train.py with the probe."""
    install_probe()
    from e2mim_tools.train import main
    return main(argv)


# ---- the command ---------------------------------------------------------------------------
def make_fixture(work):
    """A tiny random CLIP (fp16 state dict) and a Caltech101 folder with its split file."""
    import torch

    from e2mim_clip.loader import build_random_clip

    from .parity.common import make_images

    ckpt = os.path.join(work, "tiny_clip.pt")
    sd = build_random_clip("tiny").state_dict()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, ckpt)
    make_images(os.path.join(work, "fixture"), CLASSES, SPLIT)
    return ckpt


def host_train_script(checkout, path):
    """The checkout's train.py with the two lines and the shims, written to ``path``."""
    with open(os.path.join(checkout, "train.py")) as f:
        lines = f.read().split("\n")
    first_trainer = next(i for i, ln in enumerate(lines) if ln.startswith("import trainers."))
    lines.insert(first_trainer, "import e2mim_dassl")
    start = lines.index("def extend_cfg(cfg):")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace())
    while not lines[end - 1].strip():
        end -= 1
    lines.insert(end, "    e2mim_dassl.extend_cfg(cfg)")
    preamble = ["import e2mim_dassl", "e2mim_dassl.dassl_shims()",
                "from e2mim_tools.dassl_parity import install_probe", "install_probe()"]
    with open(path, "w") as f:
        f.write("\n".join(preamble + lines))


def run(cmd, env, log, cwd):
    with open(log, "w") as f:
        r = subprocess.run(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"{' '.join(cmd[:2])} failed (exit {r.returncode}), log {log}:\n{tail}")


def rows(path):
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def compare(work):
    import torch

    out = {}
    R, O = rows(os.path.join(work, "dassl.loss")), rows(os.path.join(work, "toolbox.loss"))
    out["batches"] = [len(R), len(O)]
    n = min(len(R), len(O))
    for k in R[0]:
        if k in O[0] and k != "acc":
            out[f"max_{k}_diff"] = max(abs(R[i][k] - O[i][k]) for i in range(n))
    for split in ("base", "new"):
        a = torch.load(os.path.join(work, f"dassl_{split}.logits.pt"))
        b = torch.load(os.path.join(work, f"toolbox_{split}.logits.pt"))
        out[f"logits_{split}_shape"] = list(a.shape)
        if a.shape == b.shape:
            out[f"max_logit_diff_{split}"] = float((a - b).abs().max())
            out[f"max_abs_logit_{split}"] = float(a.abs().max())
            out[f"same_predictions_{split}"] = bool((a.argmax(1) == b.argmax(1)).all())
    with open(os.path.join(work, "toolbox.init.json")) as f:
        init = json.load(f)
    out["initial_prompt_diff"] = max(v for k, v in init.items() if k.startswith("prompt_learner."))
    return out, R[:n], O[:n]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkout", required=True, help="a Dassl project checkout holding train.py (e.g. CoOp)")
    p.add_argument("--dassl", default="", help="the Dassl.pytorch checkout it runs on (added to PYTHONPATH)")
    p.add_argument("--work", default="/tmp/e2mim-dassl-parity", help="scratch folder (emptied first)")
    p.add_argument("--python", default=sys.executable, help="interpreter of the Dassl side")
    p.add_argument("--tol", type=float, default=1e-4, help="largest loss / logit difference accepted")
    a = p.parse_args(argv)
    checkout, work = os.path.abspath(a.checkout), os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ckpt = make_fixture(work)
    host_train_script(checkout, os.path.join(work, "dassl_train.py"))
    config = ["--config-file", os.path.join(ROOT, "configs", "trainers", "E2MIM", "vit_b16_base2new.yaml"),
              "--dataset-config-file", os.path.join(ROOT, "configs", "datasets", "caltech101.yaml")]
    init = os.path.join(work, "init.pt")
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    sides = {"dassl": ([a.python, os.path.join(work, "dassl_train.py")], checkout,
                       {"PYTHONPATH": os.pathsep.join(x for x in (checkout, os.path.abspath(a.dassl) if a.dassl else "",
                                                                  os.environ.get("PYTHONPATH", "")) if x)}),
             "toolbox": ([sys.executable, "-m", "e2mim_tools.dassl_parity", "--toolbox-side"], ROOT, {})}
    for side, (cmd, cwd, env) in sides.items():  # the Dassl side first: it draws the MI estimator
        env = dict(os.environ, **threads, **env, **{PROBE_INIT: init})
        root = os.path.join(work, f"data_{side}")
        shutil.copytree(os.path.join(work, "fixture"), root)
        outdir = os.path.join(work, f"out_{side}")
        common = ["--root", root, "--seed", "1", "--trainer", "E2MIM", "--backbone", ckpt] + config
        run(cmd + common + ["--output-dir", outdir] + OPTS + ["DATASET.SUBSAMPLE_CLASSES", "base"],
            dict(env, **{PROBE: os.path.join(work, side)}),
            os.path.join(work, f"{side}_base.log"), cwd)
        os.replace(os.path.join(work, f"{side}.logits.pt"), os.path.join(work, f"{side}_base.logits.pt"))
        env.pop(PROBE_INIT)
        run(cmd + common + ["--output-dir", outdir + "_new", "--eval-only", "--model-dir", outdir,
                            "--load-epoch", str(EPOCHS)] + OPTS + ["DATASET.SUBSAMPLE_CLASSES", "new"],
            dict(env, **{PROBE: os.path.join(work, f"{side}_new")}), os.path.join(work, f"{side}_new.log"), cwd)
    out, R, O = compare(work)
    print(json.dumps(out))
    for i, (r, o) in enumerate(zip(R, O)):
        print(f"  {i + 1:3d} dassl {r['loss']:.7f} toolbox {o['loss']:.7f} diff {r['loss'] - o['loss']:+.2e}  "
              + " ".join(f"{k} {o[k]:.5f}" for k in o if k not in ("loss", "acc")))
    worst = max(v for k, v in out.items() if k.startswith("max_") and "diff" in k)
    ok = out["batches"][0] == out["batches"][1] and worst <= a.tol and out.get("same_predictions_new", False)
    print(f"{'PARITY' if ok else 'MISMATCH'}: largest difference {worst:.2e} (tolerance {a.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--toolbox-side"]:
        sys.exit(run_toolbox(sys.argv[2:]))
    sys.exit(main())
