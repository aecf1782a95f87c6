"""The pure parts of the parity developer command (e2mim_tools.parity): the registry, the name
map from the published code's parameters to ours, the comparison and the table. The runs
themselves need the published checkouts and are not part of the suite."""
import torch

from e2mim_tools.parity import METHODS
from e2mim_tools.parity.common import ARCHS, logit_differences, loss_differences, table, tensor_differences
from e2mim_tools.parity.ours_side import renamer


def test_registry_cases_are_consistent():
    names = [c.name for m in METHODS.values() for c in m.CASES]
    assert len(names) == len(set(names))
    for module in METHODS.values():
        assert "/" in module.CHECKOUT
        own = {c.name for c in module.CASES}
        for c in module.CASES:
            assert c.arch in ARCHS
            assert not c.of or (c.of in own and c.diagnosis), c.name  # a diagnosis names its case
            assert len(c.opts) % 2 == 0


def test_published_names_map_to_ours():
    maple = renamer("MaPLe")({"prompt_learner.ctx": 1, "prompt_learner.compound_prompts_text.3": 2,
                              "prompt_learner.compound_prompt_projections.0.weight": 3})
    assert maple == {"prompt_learner.ctx": 1, "prompt_learner.text_deep.3": 2,
                     "prompt_learner.compound_prompt_projections.0.weight": 3}
    ivlp = renamer("IVLP")({"image_encoder.VPT": 1, "image_encoder.transformer.resblocks.2.VPT_shallow": 2,
                            "text_encoder.transformer.resblocks.1.VPT_shallow": 3})
    assert ivlp == {"prompt_learner.vision_ctx": 1, "prompt_learner.vision_deep.1": 2, "prompt_learner.text_deep.0": 3}
    assert renamer("CoCoOp")({"prompt_learner.ctx": 1}) == {"prompt_learner.ctx": 1}
    # a case's own rules come first
    assert renamer("CoOp", [(r"^a\.(\d)$", r"b.\1")])({"a.1": 5, "c": 6}) == {"b.1": 5, "c": 6}


def test_loss_differences():
    ref = [{"loss": 1.0, "loss_ce": 0.5, "acc": 50.0}, {"loss": 2.0, "loss_ce": 0.75, "acc": 25.0}]
    ours = [{"loss": 1.0 + 1e-6, "loss_ce": 0.5, "acc": 0.0}, {"loss": 2.0 - 3e-6, "loss_ce": 0.5}]
    d = loss_differences(ref, ours)
    assert d["batches"] == [2, 2] and d["argmax_batch"] == 2
    assert abs(d["max_loss_diff"] - 3e-6) < 1e-12 and d["max_loss_ce_diff"] == 0.25
    assert "max_acc_diff" not in d
    # the published ProGrad logs its CE as xe_loss: compared with our "loss"
    assert loss_differences([{"xe_loss": 1.5}], [{"loss": 1.25}], "xe_loss")["max_loss_diff"] == 0.25
    assert loss_differences([], ours) == {"batches": [0, 2]}


def test_logit_and_tensor_differences():
    a = {"logits": torch.tensor([[1.0, 2.0], [3.0, 0.0]]), "labels": torch.tensor([1, 0])}
    b = {"logits": torch.tensor([[1.0, 2.5], [1.0, 2.0]]), "labels": torch.tensor([1, 0])}
    assert logit_differences(a, b) == {"max_logit_diff": 2.0, "max_abs_logit": 3.0, "same_predictions": False}
    assert logit_differences(a, {"logits": torch.zeros(2, 3), "labels": a["labels"]})["comparable"] is False
    t = tensor_differences({"x": torch.ones(2), "y": torch.zeros(3)}, {"x": torch.ones(2), "y": torch.zeros(2), "z": 0})
    assert t == {"compared": 1, "max_diff": 0.0, "identical": True, "only_ours": ["y", "z"]}


def test_table():
    rec = {"case": "maple_nohalf", "of": "maple", "batches": [15, 15], "max_loss_diff": 1.1e-6,
           "new": {"max_logit_diff": 2e-6, "same_predictions": True}}
    lines = table([rec, {"case": "x", "error": "exit 1; log\nmore"}]).splitlines()
    assert lines[2] == "| maple_nohalf (vs ours of maple) | 15/15 | 1.1e-06 | 2.0e-06 | True | — | — |"
    assert lines[3].startswith("| x | failed: exit 1; log |")


def test_cli_refuses_odd_opts_and_unknown_cases(capsys):
    import pytest

    from e2mim_tools.parity.cli import main
    with pytest.raises(SystemExit):
        main(["maple", "--checkout", "/nonexistent", "--opts", "TRAINER.MAPLE.PROMPT_DEPTH"])
    assert "KEY VALUE pairs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["maple", "--checkout", "/nonexistent", "--case", "nope"])
    assert "maple, maple_nohalf" in capsys.readouterr().err


def test_fed_draws_are_the_same_on_both_sides(monkeypatch):
    """Case.draws: each side's randint maps the same fed values (so the same description index
    is drawn whatever the side's other random calls), and a reseeded transform's c-th call draws
    what the c-th call of the other side's draws."""
    import random
    import sys
    import types

    from e2mim_tools.parity import coprompt, hooks
    from e2mim_tools.parity.common import draw_settings
    case = coprompt.CASES[0]
    ref, ours = draw_settings(case, "ref")["randint"], draw_settings(case, "ours")["randint"]
    assert ref["values"] == ours["values"] and ref["module"] == "trainers.coprompt"
    assert ours["module"] == "e2mim_trainers.coprompt"
    fed = hooks.FedRandom([0.0, 0.999, 0.5])
    assert [fed.randint(0, 49), fed.randint(0, 49), fed.randint(3, 4)] == [0, 49, 4]
    assert fed.choices is random.choices  # only randint is fed

    calls = []

    class Augment:
        def __call__(self, x):
            calls.append(random.random())
            return x

    module = types.ModuleType("fake_aug")
    module.Augment = Augment
    monkeypatch.setitem(sys.modules, "fake_aug", module)
    monkeypatch.setattr(Augment, "__call__", Augment.__call__)  # restored after the test
    hooks.reseed_per_call("fake_aug.Augment")
    random.seed(123)
    Augment()(0), Augment()(0)
    random.seed(456)
    random.random()
    Augment()(0)
    assert calls == [random.Random(c).random() for c in range(3)]  # call c starts from seed c
