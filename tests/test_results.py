"""The results tool on hand-written result trees: HM rule, std over seeds, missing and
unfinished runs, Dassl logs of the published repositories, the three output formats."""
import csv
import io
import json
import os
import sys

import numpy as np
import pytest

from conftest import ROOT
from e2mim_tools.results import (build_report, find_runs, harmonic_mean, parse_dassl_log, render_csv,
                                  render_latex, render_markdown)

from e2mim_tools import parse_results


def put(root, rel, acc):
    d = os.path.join(root, rel)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"split": "test", "accuracy": acc}, f)
    return d


def b2n(root, phase, dataset, trainer, seed, acc, cfg="cfg"):
    return put(root, f"base2new/{phase}/{dataset}/shots_16/{trainer}/{cfg}/seed{seed}", acc)


def dassl_log(final=None, val=(), finish="Finish training", eval_only=False, epochs=2):
    lines = ["***************", "** Arguments **", "***************", f"eval_only: {eval_only}"]

    def block(acc):
        return ["=> result", "* total: 1,000", f"* correct: {int(acc * 10):,}", f"* accuracy: {acc:.1f}%",
                f"* error: {100 - acc:.1f}%", "* macro_f1: 50.0%"]

    if not eval_only:
        for e in range(epochs):
            lines.append(f"epoch [{e + 1}/{epochs}] batch [5/5] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0) "
                         f"lr 1e-03 eta 0:00:01")
            if e < len(val):
                lines += ["Evaluate on the *val* set"] + block(val[e])
    if finish:
        lines.append(finish)
    if final is not None:
        lines += ["Evaluate on the *test* set"] + block(final) + ["Elapsed: 0:01:00"]
    return "\n".join(lines) + "\n"


def cells(report, title):
    t = next(t for t in report.tables if t.title.startswith(title))
    return {tuple(r[:t.n_keys]): dict(zip(t.columns[t.n_keys:], r[t.n_keys:])) for r in t.rows}


def test_base2new_hm_std_and_average_rule(tmp_path):
    root = str(tmp_path)
    data = {  # dataset -> (base per seed, new per seed)
        "caltech101": ([90.0, 92.0, 94.0], [80.0, 81.0, 85.0]),
        "eurosat": ([60.0, 70.0, 80.0], [20.0, 40.0, 60.0]),
    }
    for d, (base, new) in data.items():
        for s in (1, 2, 3):
            b2n(root, "train_base", d, "CoOp", s, base[s - 1], cfg="vit_b16_ep50")
            b2n(root, "test_new", d, "CoOp", s, new[s - 1], cfg="vit_b16_ep50")
    rep = build_report([root], reported=False)
    assert rep.missing == [] and rep.unfinished == []
    c = cells(rep, "Base-to-new")
    cal = c[("Caltech101", "CoOp")]
    assert cal["base"].mean == pytest.approx(92.0) and cal["base"].std == pytest.approx(np.std([90, 92, 94]))
    assert cal["new"].std == pytest.approx(np.sqrt(((80 - 82) ** 2 + (81 - 82) ** 2 + (85 - 82) ** 2) / 3))
    assert cal["HM"].mean == pytest.approx(harmonic_mean(92.0, 82.0))
    eu = c[("EuroSAT", "CoOp")]
    assert eu["base"].mean == pytest.approx(70.0) and eu["new"].mean == pytest.approx(40.0)
    avg = c[("Average", "CoOp")]
    assert avg["base"].mean == pytest.approx(81.0) and avg["new"].mean == pytest.approx(61.0)
    # HM of the averages, not the mean of per-dataset HMs
    assert avg["HM"].mean == pytest.approx(harmonic_mean(81.0, 61.0))
    assert avg["HM"].mean != pytest.approx((harmonic_mean(92, 82) + harmonic_mean(70, 40)) / 2, abs=0.01)
    # sample std on request
    rep1 = build_report([root], ddof=1, reported=False)
    assert cells(rep1, "Base")[("Caltech101", "CoOp")]["base"].std == pytest.approx(2.0)
    md = render_markdown(rep)
    assert "| Average | CoOp | 81.00 | 61.00 | 69.59 |" in md
    assert "| Caltech101 | CoOp | 92.00 ± 1.63 | 82.00 ± 2.16 | 86.71 |" in md


def test_missing_seeds_are_listed_never_averaged(tmp_path):
    root = str(tmp_path)
    for d in ("caltech101", "dtd"):
        for s in (1, 2, 3):
            b2n(root, "train_base", d, "KgCoOp", s, 80.0 + s)
            if not (d == "dtd" and s == 3):
                b2n(root, "test_new", d, "KgCoOp", s, 70.0 + s)
    # a half-finished run: folder with a log of a training that never finished
    unfinished = os.path.join(root, "base2new/test_new/dtd/shots_16/KgCoOp/cfg/seed3")
    os.makedirs(unfinished)
    with open(os.path.join(unfinished, "log.txt"), "w") as f:
        f.write(dassl_log(final=None, finish=None, eval_only=False))
    # another method with a whole dataset absent
    for s in (1, 2, 3):
        b2n(root, "train_base", "caltech101", "CoOp", s, 90.0)
        b2n(root, "test_new", "caltech101", "CoOp", s, 60.0)
    rep = build_report([root], reported=False)
    assert rep.unfinished == [unfinished]
    assert rep.missing == [os.path.join(root, "base2new/train_base/dtd/shots_16/CoOp/cfg/seed") + str(s)
                           for s in (1, 2, 3)] + \
        [os.path.join(root, "base2new/test_new/dtd/shots_16/CoOp/cfg/seed") + str(s) for s in (1, 2, 3)]
    c = cells(rep, "Base")
    dtd = c[("DTD", "KgCoOp")]
    assert dtd["new"].flagged and dtd["new"].n == 2 and dtd["new"].mean == pytest.approx(71.5)
    assert not dtd["base"].flagged and dtd["HM"].flagged
    # the averages are not computed over fewer seeds or datasets ...
    assert c[("Average", "KgCoOp")]["new"].empty and c[("Average", "KgCoOp")]["HM"].empty
    assert c[("Average", "CoOp")]["base"].empty and c[("DTD", "CoOp")]["base"].empty
    md = render_markdown(rep)
    assert "71.50 ± 0.50 (2/3)*" in md and "Missing runs: 6" in md and "Unfinished runs" in md
    assert "n/a*" in md
    # ... unless asked, and then flagged
    part = cells(build_report([root], partial=True, reported=False), "Base")[("Average", "KgCoOp")]["new"]
    assert part.flagged and part.mean == pytest.approx(np.mean([72.0, 71.5]))
    # --strict turns missing runs into a failing exit status
    assert parse_results.main([root, "--strict"]) == 1
    assert parse_results.main([root]) == 0


def test_reported_rows_and_formats(tmp_path, capsys):
    root = str(tmp_path)
    for s in (1, 2, 3):
        b2n(root, "train_base", "oxford_pets", "CoCoOp", s, 95.0, cfg="vit_b16_c4_ep10_batch1_ctxv1")
        b2n(root, "test_new", "oxford_pets", "CoCoOp", s, 97.0 + s, cfg="vit_b16_c4_ep10_batch1_ctxv1")
    rep = build_report([root])
    md = render_markdown(rep)
    assert "| Average | KgCoOp (reported) | 80.73 | 73.60 | 77.00 |" in md
    assert "| Average | CLIP (reported) | 69.34 | 74.22 | 71.70 |" in md
    rows = list(csv.DictReader(io.StringIO(render_csv(rep))))
    new = [r for r in rows if r["dataset"] == "OxfordPets" and r["column"] == "new"][0]
    assert (float(new["mean"]), float(new["std"]), new["n_seeds"], new["complete"]) == \
        (99.0, pytest.approx(np.std([98, 99, 100]), abs=1e-4), "3", "1")
    assert any(r["method"] == "CoOp (reported)" and r["reported"] == "1" for r in rows)
    tex = render_latex(rep)
    assert "\\begin{tabular}{llccc}" in tex and "99.00 $\\pm$ 0.82" in tex and "\\bottomrule" in tex
    # the CLI writes all three
    assert parse_results.main([root, "--save", str(tmp_path / "out" / "tables"), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("table,dataset,method,column")
    for ext in (".md", ".csv", ".tex"):
        assert (tmp_path / "out" / f"tables{ext}").stat().st_size > 0


def test_dassl_logs_last_result_after_finish(tmp_path):
    # validation blocks during training are not the result; the block after the marker is
    assert parse_dassl_log(dassl_log(final=77.7, val=[50.0, 60.0]))["accuracy"] == 77.7
    assert parse_dassl_log(dassl_log(final=66.6, val=[50.0], finish="Finished training"))["accuracy"] == 66.6
    res = parse_dassl_log(dassl_log(final=55.5, eval_only=True, finish=None))
    assert res == {"total": 1000, "correct": 555, "accuracy": 55.5, "error": 44.5, "macro_f1": 50.0}
    # training that stopped after validation results: unfinished, not its last val number
    assert parse_dassl_log(dassl_log(final=None, val=[50.0, 60.0], finish=None)) is None
    # finished training without a test (TEST.NO_TEST): nothing to read
    assert parse_dassl_log(dassl_log(final=None, val=[50.0], finish="Finish training")) is None

    # a run folder from a published repository: log.txt from a crash, a newer timestamped
    # log from the resumed run; the newest finished log wins
    d = tmp_path / "base2new" / "train_base" / "dtd" / "shots_16" / "CoCoOp" / "c" / "seed1"
    d.mkdir(parents=True)
    (d / "log.txt").write_text(dassl_log(final=None, val=[40.0], finish=None))
    (d / "log.txt-2023-01-02-10-00-00").write_text(dassl_log(final=61.2, val=[40.0]))
    (d / "log.txt-2023-01-01-10-00-00").write_text(dassl_log(final=11.1))
    [run] = find_runs(str(tmp_path))
    assert (run.accuracy, run.source) == (61.2, "log.txt-2023-01-02-10-00-00")
    # results.json (our runs) wins over logs
    (d / "results.json").write_text(json.dumps({"accuracy": 62.0}))
    assert find_runs(str(tmp_path))[0].accuracy == 62.0


def test_cross_dataset_domain_generalization_and_fewshot(tmp_path):
    root = str(tmp_path)
    for s in (1, 2, 3):
        put(root, f"imagenet/CoOp/vit_b16_ep50_16shots/seed{s}", 70.0 + s)
        for d, acc in (("caltech101", 90.0), ("dtd", 40.0), ("imagenetv2", 60.0), ("imagenet_a", 50.0)):
            put(root, f"evaluation/CoOp/vit_b16_ep50_16shots/{d}/seed{s}", acc + s)
        for k in (1, 16):
            put(root, f"fewshot/eurosat/shots_{k}/CoOp/vit_b16_ep50/seed{s}", 50.0 + k + s)
        put(root, f"fewshot/eurosat/shots_0/ZeroshotCLIP/vit_b16/seed{s}", 45.0)
    # CoOp's own few-shot layout (scripts/coop/main.sh) is read too
    put(root, "eurosat/CoOp/vit_b16_16shots/nctx16_cscFalse_ctpend/seed1", 80.0)
    rep = build_report([root], seeds=[1, 2, 3])
    xd = cells(rep, "Cross-dataset")[("CoOp",)]
    assert xd["ImageNet (source)"].mean == pytest.approx(72.0)
    assert xd["Caltech101"].mean == pytest.approx(92.0) and xd["DTD"].mean == pytest.approx(42.0)
    assert xd["Average"].mean == pytest.approx(67.0) and "ImageNet-V2" not in xd
    dg = cells(rep, "Domain")[("CoOp",)]
    assert dg["ImageNet-V2"].mean == pytest.approx(62.0) and dg["Average"].mean == pytest.approx(57.0)
    fs = cells(rep, "Few-shot")
    assert fs[("EuroSAT", "CoOp/vit_b16_ep50")]["16 shots"].mean == pytest.approx(68.0)
    assert fs[("EuroSAT", "CoOp/vit_b16_ep50")]["0 shots"] is None
    assert fs[("EuroSAT", "ZeroshotCLIP")]["0 shots"].mean == 45.0
    assert fs[("EuroSAT", "ZeroshotCLIP")]["1 shots"] is None
    coop_layout = fs[("EuroSAT", "CoOp/vit_b16/nctx16_cscFalse_ctpend")]
    assert coop_layout["16 shots"].flagged and coop_layout["16 shots"].n == 1
    assert os.path.join(root, "eurosat/CoOp/vit_b16_16shots/nctx16_cscFalse_ctpend/seed2") in rep.missing
    # a missing target evaluation names the folder the script would write
    os.remove(os.path.join(root, "evaluation/CoOp/vit_b16_ep50_16shots/dtd/seed2/results.json"))
    os.rmdir(os.path.join(root, "evaluation/CoOp/vit_b16_ep50_16shots/dtd/seed2"))
    rep = build_report([root], tables=["xd"])
    assert rep.missing == [os.path.join(root, "evaluation/CoOp/vit_b16_ep50_16shots/dtd/seed2")]
    assert cells(rep, "Cross")[("CoOp",)]["Average"].empty


def test_shots_come_from_results_json_not_the_folder_name(tmp_path):
    """A run's training shots are what its results.json records; the folder's shots_<K> only
    where the run records none (an evaluation of a trained model: -1; zero-shot: shots_0)."""
    root = str(tmp_path)

    def put_shots(rel, shots):
        d = put(root, rel, 60.0)
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump({"split": "test", "accuracy": 60.0, "shots": shots}, f)

    put_shots("fewshot/eurosat/shots_4/CoOp/c/seed1", 8)          # renamed folder: the run trained on 8
    put_shots("fewshot/eurosat/shots_0/ZeroshotCLIP/c/seed1", -1)
    put_shots("evaluation/CoOp/c_16shots/dtd/seed1", -1)
    runs = {r.path: r.shots for r in find_runs([root])}
    assert runs == {os.path.join(root, "fewshot/eurosat/shots_4/CoOp/c/seed1"): 8,
                    os.path.join(root, "fewshot/eurosat/shots_0/ZeroshotCLIP/c/seed1"): 0,
                    os.path.join(root, "evaluation/CoOp/c_16shots/dtd/seed1"): 16}


def test_one_seed_output_and_generated_data_read_as_such(tmp_path, capsys):
    """e2mim-results on a one-seed run of generated data: complete cells (the seeds found),
    and no published 11-dataset averages next to it (a note says why)."""
    root = str(tmp_path)
    b2n(root, "train_base", "demo", "CoOp", 1, 80.0)
    b2n(root, "test_new", "demo", "CoOp", 1, 60.0)
    assert parse_results.main([root]) == 0
    out = capsys.readouterr().out
    assert "| demo | CoOp | 80.00 | 60.00 | 68.57 |" in out and "*" not in out.split("\n\n")[0]
    assert "(reported)" not in out and "Published averages left out" in out and "on demo." in out
    assert parse_results.main([root, "--seeds", "1", "2"]) == 0  # asking for more seeds flags the cells
    assert "(1/2)*" in capsys.readouterr().out
