"""Evaluators (Dassl's Classification) with the exact result lines CoOp parsers read."""
import os
from collections import OrderedDict, defaultdict

import numpy as np
import torch

from .registry import Registry
from .utils import logger

EVALUATOR_REGISTRY = Registry("evaluator")


def build_evaluator(cfg, **kwargs):
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)


def compute_accuracy(output, label):
    """Top-1 accuracy in percent of a batch of logits (the "acc" of Dassl's training lines)."""
    return (output.argmax(dim=1) == label).float().mean().item() * 100.0


@EVALUATOR_REGISTRY.register()
class Classification:
    def __init__(self, cfg, lab2cname=None, **kwargs):
        self.cfg = cfg
        self._lab2cname = lab2cname or {}
        self.reset()

    def reset(self):
        self._correct = 0
        self._total = 0
        self._y_true = []
        self._y_pred = []
        self._per_class_res = defaultdict(list)

    def process(self, output, gt):
        """output: [batch, num_classes] logits or probabilities; gt: [batch] labels."""
        pred = output.argmax(1)
        matches = pred.eq(gt).int()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.tolist())
        self._y_pred.extend(pred.tolist())
        if self.cfg.TEST.PER_CLASS_RESULT:
            for label, m in zip(gt.tolist(), matches.tolist()):
                self._per_class_res[label].append(m)

    def evaluate(self):
        from sklearn.metrics import f1_score  # imported here: it costs a second at start-up

        results = OrderedDict()
        acc = 100.0 * self._correct / max(self._total, 1)
        err = 100.0 - acc
        macro_f1 = 100.0 * f1_score(self._y_true, self._y_pred, average="macro",
                                    labels=np.unique(self._y_true), zero_division=0)
        results["accuracy"] = acc
        results["error"] = err
        results["macro_f1"] = macro_f1
        logger.info(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )
        if self.cfg.TEST.PER_CLASS_RESULT:
            logger.info("=> per-class result")
            accs = []
            per_class = OrderedDict()
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                a = 100.0 * correct / total
                accs.append(a)
                name = self._lab2cname.get(label, str(label))
                per_class[name] = a
                logger.info(f"* class: {label} ({name})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {a:.1f}%")
            results["perclass_accuracy"] = float(np.mean(accs))
            logger.info(f"* average: {results['perclass_accuracy']:.1f}%")
            self.per_class = per_class
        if self.cfg.TEST.COMPUTE_CMAT:
            from sklearn.metrics import confusion_matrix

            cmat = confusion_matrix(self._y_true, self._y_pred, normalize="true")
            path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(torch.from_numpy(cmat), path)
            logger.info(f"Confusion matrix is saved to {path}")
        results["total"] = self._total
        results["correct"] = self._correct
        return results
