"""The import graph: the layers of .importlinter hold (a back-edge fails the suite), and no
code edits the interpreter's module search path or loads a module from a file path."""
import ast
import configparser
import os
import shutil
import subprocess
import sys

from conftest import ROOT

LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")
# Python package -> folder in the repository (trainers/ and datasets/ keep CoOp's names).
PACKAGES = {"e2mim_engine": "e2mim_engine", "e2mim_clip": "e2mim_clip", "e2mim_trainers": "trainers",
            "e2mim_datasets": "datasets", "e2mim_tools": "e2mim_tools", "e2mim_dassl": "e2mim_dassl"}


def lint(cwd):
    return subprocess.run([LINT, "--config", os.path.join(cwd, ".importlinter"), "--no-cache"], cwd=cwd,
                          capture_output=True, text=True)


def test_layer_order_is_the_documented_one():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, ".importlinter"))
    layers = [ln.strip() for ln in cfg["importlinter:contract:layers"]["layers"].splitlines() if ln.strip()]
    assert layers == ["e2mim_tools | e2mim_dassl", "e2mim_trainers | e2mim_datasets", "e2mim_clip", "e2mim_engine"]
    roots = cfg["importlinter"]["root_packages"].split()
    assert sorted(roots) == sorted(PACKAGES)


def test_contracts_are_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_a_back_edge_breaks_the_contract(tmp_path):
    """A copy of the tree where the engine imports a method: the same contract fails."""
    for pkg, folder in PACKAGES.items():
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, ".importlinter"), tmp_path / ".importlinter")
    with open(tmp_path / "e2mim_engine" / "utils.py", "a") as f:
        f.write("\nfrom e2mim_trainers import coop  # noqa: E402,F401\n")
    # lint-imports finds packages from its working directory first: it reads the copies.
    r = lint(str(tmp_path))
    assert r.returncode != 0
    assert "e2mim_engine.utils -> e2mim_trainers.coop" in r.stdout and "BROKEN" in r.stdout


def _python_files():
    for folder in list(PACKAGES.values()) + ["tests"]:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if f.endswith(".py"):
                    yield os.path.join(dirpath, f)
    yield os.path.join(ROOT, "train.py")
    yield os.path.join(ROOT, "setup.py")


# Attribute chains that edit the module search path or load code from a file path. Only the
# fork server may run a script by path: it stands in for `python train.py`, which does that.
BANNED = {("sys", "path"): None, ("importlib", "util"): None,
          ("runpy", "run_path"): os.path.join("tests", "forkserver.py")}


def _chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def test_no_search_path_edits_or_loading_by_path():
    bad = []
    for path in _python_files():
        rel = os.path.relpath(path, ROOT)
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Attribute):
                chain = _chain(node)
                for banned, allowed_in in BANNED.items():
                    if chain[:len(banned)] == banned and rel != allowed_in:
                        bad.append(f"{rel}:{node.lineno}: {'.'.join(chain)}")
    assert not bad, "\n".join(bad)
