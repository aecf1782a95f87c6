"""scripts/gpu_check.sh and scripts/gpu_wheels.sh on a CPU machine: the dry run's phases and
commands, a rehearsal of the real script on the CPU (tiny CLIP, one trainer, one class count;
a failing phase makes the exit status 1 and the others still run), and the wheel builder's
refusal of a package constraints.txt does not pin (no download in the suite)."""
import json
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def test_dry_run_lists_every_phase_and_runs_nothing(tmp_path):
    out = tmp_path / "gc"
    r = subprocess.run(["bash", SCRIPT, "--dry-run", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not out.exists()
    phases = [ln.split(" ", 1)[0] for ln in lines[1:]]
    assert phases == ["install", "doctor", "pytest_cuda", "bench_c10", "bench_c100", "bench_c1000"]
    assert "--no-index --no-deps --target /tmp/e2mim-site .whl/*.whl" in lines[1]
    assert "-m e2mim_tools.doctor --device cuda --json" in lines[2]
    assert "-m pytest -q -m cuda" in lines[3]
    for c, line in zip((10, 100, 1000), lines[4:]):
        assert (f"-m e2mim_tools.benchmark --device cuda --backbones random:ViT-B/16 --classes {c} --batch 32 "
                f"--steps 3 --warmup 1 --trainers CoOp E2MIM MaPLe PromptSRC --precisions fp16 amp bf16 "
                f"--json {out}/bench_c{c}.json") in line
    # the phases' caps fit the budget's order of magnitude; the budget keeps the whole under 8 minutes
    assert "budget 470 s" in lines[0]
    quick = subprocess.run(["bash", SCRIPT, "--dry-run", "--quick", "--skip-install"], capture_output=True, text=True,
                           timeout=60, cwd=str(tmp_path))
    assert quick.stdout.splitlines()[1].startswith("doctor") and "--device cuda --quick" in quick.stdout
    bad = subprocess.run(["bash", SCRIPT, "--nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown argument --nope" in bad.stderr


def test_cpu_rehearsal_logs_summary_and_exit_status(tmp_path):
    out = tmp_path / "gc"
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_DEVICE="cpu", GPU_CHECK_BACKBONE="random:tiny",
               GPU_CHECK_CLASSES="4", GPU_CHECK_TRAINERS="CoOp", GPU_CHECK_PRECISIONS="bf16",
               GPU_CHECK_DOCTOR_ARGS="--trainers NoSuchTrainer", GPU_CHECK_PYTEST_ARGS="tests/test_cuda.py")
    r = subprocess.run(["bash", SCRIPT, "--skip-install", "--out", str(out)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr  # the doctor failed (an unknown trainer)
    summary = (out / "summary.txt").read_text().splitlines()
    state = {ln.split()[0]: ln for ln in summary[:-1]}
    assert list(state) == ["doctor", "pytest_cuda", "bench_c4"]
    assert "FAILED (exit 1)" in state["doctor"] and "Unknown trainer 'NoSuchTrainer'" in (out / "doctor.log").read_text()
    assert " ok " in state["pytest_cuda"] and "skipped" in (out / "pytest_cuda.log").read_text()
    assert " ok " in state["bench_c4"]
    rows = json.loads((out / "bench_c4.json").read_text())
    assert [(x["trainer"], x["precision"], x["device"], x["classes"]) for x in rows] == [
        ("CoOp:PREC=bf16", "bf16", "cpu", 4)]
    assert rows[0]["train_img_s"] > 0 and rows[0]["peak_mem_mb"] > 0
    assert summary[-1].startswith("gpu_check: ") and "== bench_c4" in r.stdout
    assert (out / "device.txt").read_text().startswith("torch ")


def test_wheels_need_a_pin(tmp_path):
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_wheels.sh"), str(tmp_path / "w"), "no-such-pkg"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no-such-pkg is not pinned in constraints.txt" in r.stderr
