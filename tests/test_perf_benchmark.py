"""e2mim-benchmark's output format on random:tiny with 1 step (no timing is asserted):
precisions side by side, the encoder variants with their exactness column, and the error
for a --published path that does not exist."""
import argparse
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def test_precisions_side_by_side():
    # --interleave: both precisions in one worker process (the suite stays fast; no peak memory)
    r = subprocess.run([sys.executable, "-m", "e2mim_tools.benchmark", "--backbones", "random:tiny", "--trainers",
                        "CoOp", "--precisions", "fp32", "bf16", "--classes", "4", "--batch", "4", "--steps", "1",
                        "--warmup", "1", "--threads", "1", "--interleave"], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    rows = [ln for ln in lines if ln.startswith("| random:tiny")]
    # the main table: one row per precision, the precision actually used in its column
    assert any("CoOp:PREC=fp32" in ln and "| fp32 " in ln for ln in rows), r.stdout
    assert any("CoOp:PREC=bf16" in ln and "| bf16 " in ln for ln in rows), r.stdout
    side = lines[next(i for i, ln in enumerate(lines) if ln.startswith("precisions side by side")):]
    assert "fp32 train img/s" in side[1] and "bf16 eval img/s" in side[1] and "bf16 MB" in side[1]
    cells = [c.strip() for c in side[3].strip("|").split("|")]
    assert cells[:2] == ["random:tiny", "CoOp"], side
    assert all(float(c) > 0 for c in cells[2:4] + cells[5:7]) and cells[4] == cells[7] == "-", side


def test_encoder_variants_table(capsys):
    from e2mim_tools.bench_encoders import run_encoders

    a = argparse.Namespace(backbones=["random:tiny"], batch=2, steps=1, classes=3, threads=1, compile=False)
    run_encoders(a)
    out = capsys.readouterr().out
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")]
            for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| variant")}
    for name in ("matmul 1024^2 fp32", "clip encode_image", "clip, conv1 channels-last", "fused SDPA, conv patches",
                 "fused SDPA, GEMM patches", "encode_images (default)", "text fwd+bwd: fused",
                 "text fwd+bwd: fused + checkpoint"):
        assert name in rows, out
    assert rows["matmul 1024^2 fp32"][4] == "100%"
    for name in ("fused SDPA, conv patches", "fused SDPA, GEMM patches", "encode_images (default)",
                 "text fwd+bwd: fused + checkpoint"):
        assert float(rows[name][5]) < 1e-4, rows[name]  # max |diff| to CLIP's own forward
    assert "GFLOP/image" in out


def test_published_path_must_exist(tmp_path):
    r = subprocess.run([sys.executable, "-m", "e2mim_tools.benchmark", "--published", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0
    assert "is not a folder" in r.stderr and "KaiyangZhou/CoOp" in r.stderr and "Dassl.pytorch" in r.stderr


PUBLISHED = [p for p in os.environ.get("E2MIM_PUBLISHED_COOP", "").split(os.pathsep) if p]


@pytest.mark.skipif(not PUBLISHED or not all(os.path.isdir(p) for p in PUBLISHED),
                    reason="set E2MIM_PUBLISHED_COOP to the folders CoOp:Dassl.pytorch[:deps] to run it")
def test_published_comparison_runs():
    paths = PUBLISHED
    r = subprocess.run([sys.executable, "-m", "e2mim_tools.benchmark", "--published", *paths, "--backbones",
                        "random:tiny", "--classes", "4", "--batch", "4", "--steps", "1", "--warmup", "1",
                        "--threads", "1"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| fp32"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert [c for c in cells if c.endswith("x")] == [cells[3], cells[6]]  # the train and eval ratios
    assert float(cells[3][:-1]) > 0 and float(cells[6][:-1]) > 0


def test_cached_train_features_step_and_refusal():
    """--cached-train-features: our step trains on frozen features (what the training feature
    cache hands it); a trainer that encodes or mixes images itself is refused, by name."""
    base = [sys.executable, "-m", "e2mim_tools.benchmark", "--backbones", "random:tiny", "--classes", "4",
            "--batch", "4", "--steps", "1", "--warmup", "1", "--threads", "1", "--interleave",
            "--cached-train-features", "--trainers"]
    r = subprocess.run(base + ["CoOp"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert any(ln.startswith("| random:tiny") and "CoOp" in ln for ln in r.stdout.splitlines()), r.stdout
    r = subprocess.run(base + ["IVLP"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "IVLP cannot train on cached features" in (r.stdout + r.stderr)


# ---- subcommands over one timing loop; rows as data -------------------------------------------
def test_subcommands_and_the_old_flags_parse_to_the_same_thing():
    from e2mim_tools.benchmark import parse_args

    new = parse_args(["precisions", "fp32", "bf16", "--trainers", "CoOp", "--interleave"])
    old = parse_args(["--precisions", "fp32", "bf16", "--trainers", "CoOp", "--interleave"])
    for a in (new, old):
        assert (a.command, a.precisions, a.trainers, a.interleave) == ("precisions", ["fp32", "bf16"], ["CoOp"], True)
    assert parse_args(["--encoders", "--compile"]).command == parse_args(["encoders", "--compile"]).command == "encoders"
    pub = parse_args(["--published", "/a", "/b", "--precisions", "fp32", "amp"])
    assert (pub.command, pub.published, pub.precisions) == ("published", ["/a", "/b"], ["fp32", "amp"])
    assert parse_args(["published", "/a", "--precisions", "amp"]).published == ["/a"]
    assert parse_args([]).command == parse_args(["--trainers", "CoOp"]).command == "steps"
    # two modes at once used to run one of them silently: now an error naming the subcommands
    with pytest.raises(SystemExit, match=r"--encoders and --published are separate subcommands.*"
                                         r"e2mim-benchmark encoders \.\.\.; e2mim-benchmark published"):
        parse_args(["--encoders", "--published", "/a"])
    with pytest.raises(SystemExit, match="--encoders and --precisions"):
        parse_args(["--encoders", "--precisions", "fp32"])


def test_time_rounds_alternates_and_warms_up():
    from e2mim_tools.bench_timing import median, time_rounds

    calls = []
    times = time_rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert [len(v) for v in times.values()] == [3, 3] and median([3, 1, 2]) == 2


def test_precision_table_groups_by_the_rows_fields():
    from e2mim_tools.benchmark import ROW_FIELDS, precisions_table

    def row(method, settings, prec, used, train):
        r = dict.fromkeys(ROW_FIELDS)
        r.update(backbone="random:tiny", method=method, settings=settings, requested_precision=prec, precision=used,
                 train_img_s=train, eval_img_s=2 * train)
        return r

    rows = [row("E2MIM", {"TRAINER.E2MIM.MIX_LEVEL": "image"}, "fp32", "fp32", 1.0),
            row("E2MIM", {"TRAINER.E2MIM.MIX_LEVEL": "image"}, "fp16", "fp32", 3.0),  # fp16 on CPU runs fp32
            row("CoOp", {}, "fp32", "fp32", 5.0)]
    table, heads = precisions_table(rows, ["fp32", "fp16"])
    assert heads[:5] == ["backbone", "trainer", "fp32 train img/s", "fp32 eval img/s", "fp32 MB"]
    assert table == [["random:tiny", "E2MIM:TRAINER.E2MIM.MIX_LEVEL=image", "1.00", "2.00", "-", "3.00", "6.00", "-"],
                     ["random:tiny", "CoOp", "5.00", "10.00", "-", "-", "-", "-"]]


def test_steps_subcommand_writes_rows_with_every_field(tmp_path):
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, "-m", "e2mim_tools.benchmark", "steps", "--backbones", "random:tiny",
                        "--trainers", "ZeroshotCLIP", "CoOp:OPTIM.LR=0.01", "--classes", "4", "--batch", "4",
                        "--steps", "1", "--warmup", "1", "--threads", "1", "--interleave", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import json
    from e2mim_tools.benchmark import ROW_FIELDS
    rows = json.loads(out.read_text())
    assert [list(r) for r in rows] == [list(ROW_FIELDS)] * 2
    zs, coop = rows
    assert (zs["method"], zs["train_img_s"], coop["method"], coop["settings"]) == (
        "ZeroshotCLIP", None, "CoOp", {"OPTIM.LR": "0.01"})
    assert coop["train_img_s"] > 0 and coop["eval_img_s"] > 0 and coop["trainable_params"] == 16 * 128
