"""Shared fixtures: config building as train.py does it, and
small generated image folders in the real on-disk layouts. Nothing touches the network."""
import os

# Tiny models on 2 cores: one intra-op thread is several times faster than two fighting
# (and is inherited by the train.py subprocesses the tests start).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The evaluation feature cache is on by default: the suite's runs (and the train.py
# subprocesses they start) fill a folder of their own, removed at exit, not ~/.cache.
if "E2MIM_FEATURE_CACHE" not in os.environ:
    import atexit  # noqa: E402
    import shutil  # noqa: E402
    import tempfile  # noqa: E402

    os.environ["E2MIM_FEATURE_CACHE"] = tempfile.mkdtemp(prefix="e2mim-test-features-")
    atexit.register(shutil.rmtree, os.environ["E2MIM_FEATURE_CACHE"], True)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import e2mim_datasets  # noqa: E402,F401  (registers the dataset zoo)
import e2mim_trainers  # noqa: E402,F401  (registers every method)
from e2mim_engine.cli import build_parser, setup_cfg  # noqa: E402

TINY_CFG = os.path.join(ROOT, "configs", "trainers", "CoOp", "demo_tiny.yaml")
DEMO_CFG = os.path.join(ROOT, "configs", "datasets", "demo.yaml")


def make_cfg(*argv):
    """A frozen config from train.py-style arguments."""
    return setup_cfg(build_parser().parse_args([str(a) for a in argv]))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A data root holding the generated demo dataset (generated once per session)."""
    root = tmp_path_factory.mktemp("data")
    from e2mim_datasets.demo import generate
    generate(str(root / "demo"))
    return str(root)


def demo_args(root, out, *extra, trainer="CoOp", seed=1):
    return ["--root", root, "--seed", seed, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
            "--config-file", TINY_CFG, "--output-dir", out, "DATASET.NUM_SHOTS", 4,
            "DATALOADER.NUM_WORKERS", 0, "OPTIM.MAX_EPOCH", 2, "TRAINER.COOP.N_CTX", 4,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "VERBOSE", False, *extra]


def build_demo_tiny(trainer, root, out, *extra, epochs=1):
    """``trainer`` by its own demo_tiny.yaml on the Demo dataset: 2 shots, batch 4, seed 1."""
    from e2mim_engine.seeding import set_random_seed
    from e2mim_engine.trainer import build_trainer
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                   "--config-file", os.path.join(ROOT, "configs", "trainers", trainer, "demo_tiny.yaml"),
                   "--output-dir", str(out), "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", epochs,
                   "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "VERBOSE", False, *extra)
    set_random_seed(1)
    return build_trainer(cfg)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; run them with `pytest -m cuda` on a GPU machine "
                                       "(scripts/gpu_check.sh does), skipped where torch sees none")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and torch sees none (on a GPU machine: pytest -m cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
