"""e2mim-doctor on CPU: the tiny shape with CoOp, the table and its JSON, the unsupported
precision said rather than failed, and each check failing (exit status 1, the one-line
reason in the table) when the thing it checks is broken on purpose."""
import json

import pytest
import torch

from e2mim_tools import doctor

ARGS = ["--device", "cpu", "--shapes", "tiny", "--trainers", "CoOp", "--steps", "2", "--classes", "3"]


def _run(capsys, *extra):
    code = doctor.main(ARGS + list(extra))
    return code, capsys.readouterr().out


def test_cpu_table_json_and_unsupported_fp16(tmp_path, capsys):
    path = tmp_path / "doctor.json"
    code, out = _run(capsys, "--precisions", "fp32", "fp16", "--json", str(path))
    assert code == 0, out
    # the stack: torch and the pins of the direct requirements, installed versions beside them
    assert f"torch {torch.__version__}" in out
    assert "| clip-anytorch " in out and "checking on cpu" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("| tiny ") and "CoOp" in ln)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith("ok ") and "ms/step" in cells[2] and cells[2].endswith(" MB"), row
    assert cells[3] == "unsupported [1]", row
    assert "[1] unsupported: the engine runs fp16 as fp32 on cpu (probe " in out
    assert "1 ok, 1 unsupported, 0 failed" in out
    res = json.loads(path.read_text())
    ok, fp16 = res["cells"]
    assert (ok["trainer"], ok["shape"], ok["precision"], ok["status"]) == ("CoOp", "tiny", "fp32", "ok")
    assert len(ok["losses"]) == 2 and ok["losses"][1] < ok["losses"][0]
    assert ok["step_ms"] > 0 and ok["eval_ms"] > 0 and ok["peak_mb"] > 100  # RSS holds torch
    assert fp16["status"] == "unsupported" and "fp32 speed" in fp16["probe"]


def _no_update(self, batch):
    """A step that never changes the prompt."""
    image, label = self.parse_batch_train(batch)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(self.model(image).float(), label)
    return {"loss": loss.item()}


def _half_prompt(self, batch):
    """A right step that leaves the prompt in float16 after the last one (of 2)."""
    out = ORIGINAL_STEP(self, batch)
    self.steps_done = getattr(self, "steps_done", 0) + 1
    if self.steps_done == 2:
        self.model.prompt_learner.ctx.data = self.model.prompt_learner.ctx.data.half()
    return out


def _with_clip_weight(module):
    """The learnable tensors and a frozen CLIP weight besides them."""
    return dict(REAL_LEARNABLE(module), **{"clip.visual.proj": torch.zeros(2, 2)})


from e2mim_engine.checkpoint import learnable_state_dict as REAL_LEARNABLE  # noqa: E402
from e2mim_trainers.coop import CoOp  # noqa: E402

ORIGINAL_STEP = CoOp.forward_backward


@pytest.mark.parametrize("target,replacement,reason", [
    ("e2mim_trainers.coop.CoOp.forward_backward", _no_update, "loss did not decrease on a fixed batch: "),
    ("e2mim_trainers.coop.CoOp.forward_backward", _half_prompt,
     "prompt_learner.ctx is torch.float16 after training (learnable parameters stay float32)"),
    ("e2mim_engine.checkpointer.learnable_state_dict", _with_clip_weight,
     "the checkpoint of prompt_learner holds tensors that are neither learnable nor buffers: ['clip.visual.proj']"),
    ("e2mim_engine.checkpointer.Checkpointer.load_state", lambda self, name, state, path, optional=(): None,
     "the reloaded checkpoint gives other logits (max |diff| "),
])
def test_a_broken_check_fails_with_its_reason(monkeypatch, capsys, target, replacement, reason):
    monkeypatch.setattr(target, replacement)
    code, out = _run(capsys, "--precisions", "fp32")
    assert code == 1, out
    row = next(ln for ln in out.splitlines() if ln.startswith("| tiny ") and "CoOp" in ln)
    assert "failed [1]" in row
    note = next(ln for ln in out.splitlines() if ln.startswith("[1] failed: "))
    assert reason in note, note
    assert "0 ok, 0 unsupported, 1 failed" in out and out.rstrip().endswith("FAILED")


def test_a_precision_whose_probe_fails_is_unsupported_not_failed(monkeypatch, capsys):
    real = doctor._probe_once

    def probe(prec, device, gen):
        if prec == "bf16":
            raise RuntimeError('"addmm_impl_cpu_" not implemented for \'BFloat16\'')
        return real(prec, device, gen)

    monkeypatch.setattr(doctor, "_probe_once", probe)
    code, out = _run(capsys, "--precisions", "fp32", "bf16")
    assert code == 0, out
    assert "[1] unsupported: probe failed: RuntimeError: \"addmm_impl_cpu_\" not implemented for 'BFloat16'" in out


def test_steps_the_grad_scaler_skips_are_run_again(monkeypatch, capsys, tmp_path):
    """amp on CUDA has a GradScaler that skips overflowing steps; here one on CPU (amp's
    bfloat16 autocast) and infinite gradients in the first two steps."""
    from e2mim_engine.device import Precision

    monkeypatch.setattr(Precision, "grad_scaler", lambda self: torch.amp.GradScaler("cpu") if self.name == "amp" else None)

    def step(self, batch):
        self.calls = getattr(self, "calls", 0) + 1
        ctx = self.model.prompt_learner.ctx
        hook = ctx.register_hook(lambda g: g * float("inf")) if self.calls <= 2 else None
        try:
            return ORIGINAL_STEP(self, batch)
        finally:
            if hook is not None:
                hook.remove()

    monkeypatch.setattr(CoOp, "forward_backward", step)
    path = tmp_path / "d.json"
    code, out = _run(capsys, "--precisions", "amp", "--json", str(path))
    assert code == 0, out
    cell = json.loads(path.read_text())["cells"][0]
    assert cell["scaler_skipped"] == 2 and len(cell["losses"]) == 4  # 2 skipped + the 2 asked for
    assert cell["losses"][0] == cell["losses"][1] == cell["losses"][2] > cell["losses"][3]
    assert "2 skipped by the GradScaler" in out


def test_quick_plan_and_bad_arguments(tmp_path):
    a = doctor.parse_args(["--quick"])
    assert a.steps == 3
    pairs = doctor.plan(a, ["CoOp", "MaPLe", "ZeroshotCLIP"])
    assert pairs == [("tiny", "CoOp"), ("tiny", "MaPLe"), ("tiny", "ZeroshotCLIP"), ("ViT-B/16", "CoOp")]
    assert len(doctor.plan(doctor.parse_args([]), ["CoOp", "MaPLe"])) == 4
    with pytest.raises(SystemExit):
        doctor.parse_args(["--steps", "1"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device is visible"):
            doctor.resolve_device("cuda")
    with pytest.raises(SystemExit, match="not a device"):
        doctor.resolve_device("gpu0")


def test_pins_against_installed(tmp_path):
    f = tmp_path / "constraints.txt"
    f.write_text(f"# comment\ntabulate==0.0.1\nyacs==0.1.8\ntorch=={torch.__version__.split('+')[0]}\n"
                 f"no-such-package-e2mim==1.0\n")
    rows, summary = doctor.pin_report(str(f))
    state = {r[0]: (r[2], r[3]) for r in rows}
    assert state["tabulate"][1] == "differs" and state["yacs"] == ("0.1.8", "ok")
    assert state["torch"][1] == "ok"  # a local build tag (2.14.1+cu130) is no difference
    assert doctor._base_version("2.11.0+cu130") == "2.11.0"
    assert summary.startswith("1 other pins") and "1 not installed" in summary
