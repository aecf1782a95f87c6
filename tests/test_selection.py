"""The preregistered selection of E2MIM's configuration: validation only, ties to the simpler."""
import json
import os

import pytest

from e2mim_tools import bench, selection
from e2mim_tools.selection import SelectionError, choose, validation_table


def test_best_mean_wins_when_its_lead_is_clear():
    table = {"plain": {1: 60.0, 2: 61.0, 3: 59.0}, "fancy": {1: 65.0, 2: 66.5, 3: 64.0}}
    chosen, best, rows = choose(["plain", "fancy"], table)
    assert (chosen, best) == ("fancy", "fancy")
    # plain's per-seed gaps to the best: 5, 5.5, 5 -> mean 5.1667, SE = stdev/sqrt(3) = 0.1667
    assert rows["plain"]["diff_to_best"] == pytest.approx(5.1667, abs=1e-4)
    assert rows["plain"]["diff_se"] == pytest.approx(0.1667, abs=1e-4)
    assert rows["plain"]["ties_with_best"] is False


def test_a_lead_within_two_standard_errors_goes_to_the_simpler_candidate():
    # fancy leads by 1, 3, -1 (mean 1, SE 1.155): a tie, so the earlier-listed plain is chosen
    table = {"plain": {1: 60.0, 2: 60.0, 3: 60.0}, "fancy": {1: 61.0, 2: 63.0, 3: 59.0}}
    chosen, best, rows = choose(["plain", "fancy"], table)
    assert best == "fancy" and chosen == "plain" and rows["plain"]["ties_with_best"] is True


def test_missing_seeds_and_missing_validation_are_errors():
    with pytest.raises(SelectionError, match="missing: fancy seed 3"):
        choose(["plain", "fancy"], {"plain": {1: 1, 2: 1, 3: 1}, "fancy": {1: 1, 2: 1}})
    with pytest.raises(SelectionError, match="TEST.REPORT_VAL True"):
        validation_table([("plain", 1, {"accuracy": 99.0})])


def test_select_reads_validation_only_and_writes_the_record(tmp_path, monkeypatch):
    """Every candidate's training runs get a val_accuracy and a test accuracy that would pick
    the other way: the choice follows validation, and no test number reaches the record."""
    out = tmp_path / "out"
    sw = bench.repo_configs() + "/sweeps/" + bench.SELECT_SWEEP
    from e2mim_tools.sweep.spec import load, expand
    spec = load(sw, {"data": str(tmp_path), "output": str(out), "seeds": [1, 2, 3]})
    tags = {m.label: m.tag for m in spec.methods}
    for run in expand(spec):
        if run.kind != "train":
            continue
        tag = tags[run.method]
        val = 70.0 + (5.0 if tag == "sel_beta3" else 0.0) + run.seed * 0.1
        os.makedirs(run.directory)
        with open(os.path.join(run.directory, "results.json"), "w") as f:
            json.dump({"accuracy": 99.0 if tag == "sel_plain" else 10.0, "val_accuracy": val}, f)
    written = tmp_path / "docs" / "e2mim_selection.json"
    monkeypatch.setattr(bench, "selection_path", lambda configs=None: str(written))
    written.parent.mkdir()
    assert bench.select(str(tmp_path), str(out), log=lambda m: None) == 0
    rec = json.loads(written.read_text())
    assert rec["chosen"] == rec["best"] == "sel_beta3"
    assert rec["chosen_opts"] == ["TRAINER.E2MIM.MI_WEIGHT", "3.0"]
    assert rec["rule"] == selection.RULE and rec["selection_seeds"] == [1, 2, 3]
    assert "99.0" not in written.read_text() and "accuracy\"" not in written.read_text()
    assert list(rec["candidates"])[0] == "sel_plain"     # the file's order, simplest first


def test_the_chosen_keys_reach_e2mims_bench_recipe_only(tmp_path, monkeypatch):
    path = tmp_path / "sel.json"
    path.write_text(json.dumps({"chosen_opts": ["TRAINER.E2MIM.INFERENCE", "ensemble"]}))
    monkeypatch.setattr(bench, "selection_path", lambda configs=None: str(path))
    assert bench.bench_recipe("E2MIM")["TRAINER"]["E2MIM"]["INFERENCE"] == "ensemble"
    assert "INFERENCE" not in bench.bench_recipe("KgCoOp")["TRAINER"]["KGCOOP"]
    path.write_text(json.dumps({"chosen_opts": ["TRAINER.E2MIM.MI_WEIGHT", "3.0", "TRAINER.E2MIM.MIXUP", "false"]}))
    node = bench.bench_recipe("E2MIM")["TRAINER"]["E2MIM"]
    assert node["MI_WEIGHT"] == 3.0 and node["MIXUP"] is False
