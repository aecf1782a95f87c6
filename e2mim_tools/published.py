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

2024-2026 methods with public code (``note`` says where a teacher or extra data was used;
the plug-ins give one row per base method, their best published variant or the one whose code
is released):

* CoPrompt: Roy & Etemad, "Consistency-guided Prompt Learning for Vision-Language Models",
  ICLR 2024 (arXiv 2306.01195; github.com/ShuvenduRoy/CoPrompt, README "Results", the average
  over 11 datasets and 3 seeds; HM 2 * 84.00 * 77.23 / (84.00 + 77.23) = 80.48 checks). Its
  consistency term reads LLM-written class descriptions (GPT-3), shipped with the code.
* TCP: Yao, Zhang & Xu, "TCP: Textual-based Class-aware Prompt tuning for Visual-Language
  Model", CVPR 2024, Table 1 (github.com/htyao89/Textual-based_Class-aware_prompt_tuning; its
  README has no table: the numbers as reprinted in the base-to-new table of the Skip Tuning
  README, github.com/Koorye/SkipTuning, examples/base_to_new.png).
* PromptKD: Li et al., "PromptKD: Unsupervised Prompt Distillation for Vision-Language Models",
  CVPR 2024, Table 1(a) (github.com/zhengli97/PromptKD, README, images/exp_results.png).
* CasPL: Wu et al., "Cascade Prompt Learning for Vision-Language Model Adaptation", ECCV 2024
  (github.com/megvii-research/CasPL, README base-to-novel table; the PromptSRC variant, whose
  training code is released).
* Skip Tuning: Wu et al., "Skip Tuning: Pre-trained Vision-Language Models are Effective and
  Efficient Adapters Themselves", CVPR 2025 (github.com/Koorye/SkipTuning, README,
  examples/base_to_new.png, "Avg ACC").
* DPC: Li et al., "DPC: Dual-Prompt Collaboration for Tuning Vision-Language Models",
  CVPR 2025 (github.com/JREion/DPC, README, docs/DPC_Experiments_1.png, "Avg. over 11 datasets").
* ATPrompt: Li et al., "Advancing Textual Prompt Learning with Anchored Attributes", ICCV 2025
  (github.com/zhengli97/ATPrompt, README "Experimental Comparison"; its best variant, over MaPLe).

The order is publication order; it is also the order of those trainers' rows in the tables
(a method without a trainer here is named by its published trainer or its own name).
"""
from typing import NamedTuple


class Reported(NamedTuple):
    name: str
    trainer: str
    base: float
    new: float
    hm: float
    source: str
    note: str = ""  # a teacher model or data beyond the base classes' few shots; else empty


REPORTED_BASE2NEW = [
    Reported("CLIP", "ZeroshotCLIP", 69.34, 74.22, 71.70, "CoCoOp / MaPLe READMEs"),
    Reported("CoOp", "CoOp", 82.69, 63.22, 71.66, "CoCoOp / MaPLe READMEs"),
    Reported("CoCoOp", "CoCoOp", 80.47, 71.69, 75.83, "CoCoOp / MaPLe READMEs"),
    Reported("ProGrad", "ProGrad", 82.48, 70.75, 76.16, "KgCoOp README"),
    Reported("KgCoOp", "KgCoOp", 80.73, 73.60, 77.00, "KgCoOp README"),
    Reported("IVLP", "IVLP", 84.21, 71.79, 77.51, "PromptSRC README"),
    Reported("MaPLe", "MaPLe", 82.28, 75.14, 78.55, "MaPLe README"),
    Reported("PromptSRC", "PromptSRC", 84.26, 76.10, 79.97, "PromptSRC README"),
    Reported("CoPrompt", "CoPrompt", 84.00, 77.23, 80.48, "CoPrompt README (ICLR 2024)",
             "LLM-written class descriptions (GPT-3, shipped with the code) for its consistency term"),
    # DePT over four bases: Zhang et al., "DePT: Decoupled Prompt Tuning", CVPR 2024, Table 1
    # (github.com/Koorye/DePT, README figure examples/base_to_new_performance.png); no extra data.
    Reported("CoOp+DePT", "ExtrasLinearProbeCoOp", 83.66, 71.82, 77.29, "DePT paper, Table 1"),
    Reported("CoCoOp+DePT", "ExtrasLinearProbeCoCoOp", 83.80, 72.89, 77.97, "DePT paper, Table 1"),
    Reported("KgCoOp+DePT", "ExtrasLinearProbeKgCoOp", 83.62, 75.04, 79.10, "DePT paper, Table 1"),
    Reported("MaPLe+DePT", "ExtrasLinearProbeMaPLe", 84.85, 74.82, 79.52, "DePT paper, Table 1"),
    Reported("TCP", "TCP", 84.13, 75.36, 79.51, "TCP paper, Table 1 (as reprinted in the Skip Tuning README)"),
    Reported("PromptKD", "PromptKD", 86.96, 80.73, 83.73, "PromptKD README, Table 1(a)",
             "distilled from a PromptSRC-tuned ViT-L/14 teacher on the unlabeled training images of all classes"),
    Reported("PromptSRC+CasPL", "CasPL", 86.11, 79.54, 82.69, "CasPL README",
             "boosting prompts distilled from a larger CLIP teacher on unlabeled domain images"),
    Reported("SkipT", "SkipTuning", 85.04, 77.53, 81.11, "Skip Tuning README",
             "fine-tunes CLIP's own weights (layer- and class-wise skipping), no prompts"),
    Reported("PromptSRC+DPC", "DPC", 86.10, 74.78, 80.04, "DPC README (base method re-run by its authors)"),
    Reported("PromptKD+DPC", "DPC", 87.55, 80.55, 83.91, "DPC README (base method re-run by its authors)",
             "over PromptKD: its ViT-L/14 teacher and unlabeled images"),
    Reported("MaPLe+ATPrompt", "ATPrompt", 82.98, 75.76, 79.21, "ATPrompt README"),
    Reported("MMRL", "MMRL", 85.68, 77.16, 81.20, "MMRL paper (CVPR 2025), Table 1"),
]
