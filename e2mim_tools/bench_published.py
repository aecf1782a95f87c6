"""Benchmark worker that drives the published CoOp trainer (KaiyangZhou/CoOp on Dassl.pytorch).

Not a command of its own: ``e2mim-benchmark published PATH...`` starts it in a subprocess
whose PYTHONPATH holds the user's copies of CoOp and Dassl.pytorch (and whatever those need),
with a scratch folder as working directory (so CoOp's ``train.py`` is the one imported). Only
this subprocess imports the published code; nothing of it is copied here.

It builds CoOp's trainer exactly as CoOp's train.py does (Dassl's default config, CoOp's
``extend_cfg``, ``build_trainer``) on a synthetic class list, with one change: CoOp's
``load_clip_to_cpu`` (which downloads weights) is replaced by CoOp's own ``clip.build_model``
on the state dict our worker saved, so both sides run the same random weights. Then it
answers the parent's commands on stdin, one per line (e2mim_tools.bench_timing.serve):
``train`` (one timed ``forward_backward``), ``eval`` (one timed ``model_inference``),
``done`` (print the RESULT line with peak memory and exit). Every answer is one line on stdout.
"""
import argparse
import importlib
import os
import sys

from e2mim_tools.bench_timing import serve


def _published_trainer(a):
    import torch

    coop_train = importlib.import_module("train")  # CoOp's train.py (registers its trainers)
    coop = importlib.import_module("trainers.coop")
    clip = importlib.import_module("clip.clip")
    dassl_config = importlib.import_module("dassl.config")
    dassl_data = importlib.import_module("dassl.data.datasets")
    dassl_engine = importlib.import_module("dassl.engine")
    dassl_utils = importlib.import_module("dassl.utils")

    placeholder = os.path.join(a.tmp, "placeholder.jpg")  # Dassl's Datum checks the file exists
    open(placeholder, "wb").close()
    C = a.classes

    class BenchClasses(dassl_data.DatasetBase):
        def __init__(self, cfg):
            items = [dassl_data.Datum(placeholder, i % C, 0, f"class {i % C}") for i in range(2 * C)]
            super().__init__(train_x=items, val=items[:C], test=items[:C])

    if "BenchClasses" not in dassl_data.DATASET_REGISTRY._obj_map:
        dassl_data.DATASET_REGISTRY.register(BenchClasses)

    state_dict = torch.load(a.clip, map_location="cpu", weights_only=True)
    coop.load_clip_to_cpu = lambda cfg: clip.build_model(dict(state_dict))  # no download

    cfg = dassl_config.get_cfg_default()
    coop_train.extend_cfg(cfg)
    cfg.merge_from_list([
        "TRAINER.NAME", "CoOp", "DATASET.NAME", "BenchClasses", "MODEL.BACKBONE.NAME", "ViT-B/16",
        "OUTPUT_DIR", os.path.join(a.tmp, "out"), "SEED", 1, "DATALOADER.NUM_WORKERS", 0,
        "DATALOADER.TRAIN_X.BATCH_SIZE", a.batch, "USE_CUDA", a.device == "cuda", "OPTIM.NAME", "sgd",
        "OPTIM.LR", 0.002, "OPTIM.MAX_EPOCH", 1, "INPUT.SIZE", (a.resolution, a.resolution),
        "TRAINER.COOP.PREC", a.prec, "TRAINER.COOP.N_CTX", 16])
    cfg.freeze()
    dassl_utils.set_random_seed(1)
    return dassl_engine.build_trainer(cfg)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clip", required=True, help="state dict of the CLIP both sides run")
    p.add_argument("--tmp", required=True)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prec", default="fp32")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # Dassl and CoOp print while building; the protocol owns stdout
    t = _published_trainer(a)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(1)
    B, C = a.batch, a.classes
    img = torch.randn(B, 3, a.resolution, a.resolution, generator=g).to(dev)
    lab = (torch.cat([torch.arange(B // 2), torch.arange(B - B // 2) + 1]) % C).to(dev)
    batch = {"img": img, "label": lab}
    t.batch_idx, t.num_batches = 0, 10**9  # never the epoch's last batch: no LR step

    def train_step():
        t.set_model_mode("train")
        t.forward_backward(batch)

    def eval_step():
        t.set_model_mode("eval")
        with torch.no_grad():
            t.model_inference(img)

    for _ in range(a.warmup):
        train_step()
        eval_step()
    out = {"trainer": "CoOp (published)", "precision": a.prec,
           "trainable_params": sum(p.numel() for p in t.model.parameters() if p.requires_grad)}
    serve({"train": train_step, "eval": eval_step}, dev, out, stdout=real_stdout)


if __name__ == "__main__":
    main()
