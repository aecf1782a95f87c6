"""Published reference numbers shown next to our runs (rows marked "reported").

Base-to-new generalization, ViT-B/16, 16 shots, average over the 11 datasets: (name in
tables, trainer name of our or the published code, base, new, HM, where the table note
says it comes from). The numbers are Table 1 (average over 11 datasets) of the papers,
repeated in the repositories' READMEs:

* CLIP, CoOp, CoCoOp: Zhou et al., "Conditional Prompt Learning for Vision-Language Models",
  CVPR 2022 (github.com/KaiyangZhou/CoOp, COCOOP.md); reprinted in the MaPLe README
  (github.com/muzairkhattak/multimodal-prompt-learning).
* ProGrad, KgCoOp: Yao et al., "Visual-Language Prompt Tuning with Knowledge-guided Context
  Optimization", CVPR 2023 (github.com/htyao89/KgCoOp).
* IVLP (independent vision-language prompting, PromptSRC's baseline): Khattak et al., ICCV 2023
  (github.com/muzairkhattak/PromptSRC, README, "comparison with baseline Independent V-L Prompting").
* MaPLe: Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023
  (github.com/muzairkhattak/multimodal-prompt-learning).
* PromptSRC: Khattak et al., "Self-regulating Prompts: Foundational Model Adaptation without
  Forgetting", ICCV 2023 (github.com/muzairkhattak/PromptSRC).
* MMRL: Guo & Gu, "MMRL: Multi-Modal Representation Learning for Vision-Language Models",
  CVPR 2025, Table 1 (arXiv 2503.08497; github.com/yunncheng/MMRL). No extra data or teacher.

The order is publication order; it is also the order of those trainers' rows in the tables.
"""
from typing import NamedTuple


class Reported(NamedTuple):
    name: str
    trainer: str
    base: float
    new: float
    hm: float
    source: str


REPORTED_BASE2NEW = [
    Reported("CLIP", "ZeroshotCLIP", 69.34, 74.22, 71.70, "CoCoOp / MaPLe READMEs"),
    Reported("CoOp", "CoOp", 82.69, 63.22, 71.66, "CoCoOp / MaPLe READMEs"),
    Reported("CoCoOp", "CoCoOp", 80.47, 71.69, 75.83, "CoCoOp / MaPLe READMEs"),
    Reported("ProGrad", "ProGrad", 82.48, 70.75, 76.16, "KgCoOp README"),
    Reported("KgCoOp", "KgCoOp", 80.73, 73.60, 77.00, "KgCoOp README"),
    Reported("IVLP", "IVLP", 84.21, 71.79, 77.51, "PromptSRC README"),
    Reported("MaPLe", "MaPLe", 82.28, 75.14, 78.55, "MaPLe README"),
    Reported("PromptSRC", "PromptSRC", 84.26, 76.10, 79.97, "PromptSRC README"),
    Reported("MMRL", "MMRL", 85.68, 77.16, 81.20, "MMRL paper (CVPR 2025), Table 1"),
]
