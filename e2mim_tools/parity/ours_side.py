"""Our side: this project's train.py with the same hooks as the published side.

Started by the parity command as ``python -m e2mim_tools.parity.ours_side ARGS...`` with the
run's settings as JSON in $E2MIM_PARITY (common.side_env). The published code's initial
learnable tensors are renamed to ours with the trainer's PublishedFormat (the mapping that also
reads the authors' checkpoints) plus the case's extra rules, then loaded after build_model.
"""
import json
import os
import re
import sys

from e2mim_engine import evaluation, trainer, utils
from e2mim_tools.parity import hooks


def published_format(trainer_name):
    """The trainer's PublishedFormat (how the authors' code names and saves its tensors)."""
    import e2mim_trainers  # noqa: F401  (registers the trainers)
    return trainer.TRAINER_REGISTRY.get(trainer_name).published_checkpoint


def renamer(trainer_name, extra_rules=()):
    """A function mapping the published code's whole-model parameter names to ours: the case's
    extra rules (regex, replacement; the first that matches wins), else the trainer's
    PublishedFormat when it describes whole-model names (a prefix), else unchanged."""
    fmt = published_format(trainer_name)

    def rename(tensors):
        out = {}
        for key, value in tensors.items():
            for pattern, repl in extra_rules:
                if re.search(pattern, key):
                    key = re.sub(pattern, repl, key)
                    break
            else:
                if fmt is not None and fmt.prefix:  # names of the whole model, like ours
                    mapped = fmt.our_state_dict({key: value})
                    key = fmt.prefix + next(iter(mapped)) if mapped else key
            out[key] = value
        return out
    return rename


def main(argv):
    spec = json.loads(os.environ["E2MIM_PARITY"])
    if spec.get("loss_log"):
        hooks.record_losses(utils.MetricMeter, spec["loss_log"])
    if spec.get("eval_log"):
        hooks.record_logits(evaluation.Classification, spec["eval_log"])
    rename = renamer(spec["trainer"], [tuple(r) for r in spec.get("rename", [])])
    hooks.exchange_init(trainer.TrainerBase, spec.get("init_dump"), spec.get("init_load"), rename)
    hooks.install_draws(spec)
    from e2mim_tools.train import main as train
    return train(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
