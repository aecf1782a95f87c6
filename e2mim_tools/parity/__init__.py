"""Parity with the published code: each re-implemented method trained beside its authors' own
``train.py`` on identical tiny inputs, loss for loss.

A developer command (``e2mim-parity``, ``python -m e2mim_tools.parity.cli``; docs/PARITY.md), not
part of the test suite: it needs plain checkouts of the published repositories and an
interpreter that runs them (torch, Dassl and its requirements)::

    e2mim-parity maple --checkout ~/src/multimodal-prompt-learning --dassl ~/src/Dassl.pytorch \\
        --ref-python ~/ref-venv/bin/python --out /tmp/e2mim-parity

Both codes get the same random OpenAI-format CLIP checkpoint, image folder, split file, seed and
deterministic settings (fp32, no workers, no augmentation, sequential batches, 3 epochs on the
base classes), the published config file of the method, and the same initial learnable tensors
(the published code draws them; ours loads them by name). Recorded on both sides: full-precision
per-batch losses, the test logits after training (base classes) and of an evaluation of the last
epoch on the new classes, the initial and final learnable tensors.

Layout: common.py (Case, fixture, the two runs, comparison, table), hooks.py (recording hooks,
shared by both sides), ref_side.py (the published side and its shims for current torch / CPU),
ours_side.py (our side), cli.py (the command), and one module per method.

Adding a method (the extension point)
-------------------------------------
1. Write ``e2mim_tools/parity/<method>.py`` with ``CHECKOUT`` (the published repository, for the
   help text) and ``CASES``, a list of ``common.Case``: the published ``--trainer`` name, the
   published config file (relative to ``code``, the checkout's folder holding train.py), the
   KEY VALUE pairs both runs get (at least the method's PREC fp32, shots, batch size), our
   trainer's name if it differs, ``dassl`` when the checkout bundles its own Dassl, ``arch``
   ("b16w3" when the published code hard-codes ViT-B/16 widths), ``shims`` the published code
   needs (``cuda_shim``, ``float_modules``, ``nohalf_attrs``: ref_side.py), ``rename`` rules for
   learnable tensors whose published names our trainer's PublishedFormat does not map, and
   ``loss_key`` when the published code logs its total loss under another name, ``ref_opts`` for
   KEY VALUE pairs only the published train.py takes (MMRL's TASK), ``ours_opts`` for pairs only
   ours takes ("{code}" is the checkout's code folder: CoPrompt's descriptions), ``classes``
   for a fixture of other class names (names a published data file covers), ``draws`` for
   random per-step choices fed the same to both sides (CoPrompt's description index, each
   RandAugment call reseeded). A diagnosis
   case (``of=`` the case it diagnoses, ``diagnosis={"no_half": True}`` or ``{"cuda_float":
   True}``) reruns only the published side with one precision quirk neutralised and is compared
   with that case's run of ours.
2. Register the module in METHODS below.
3. Run it and put its row in docs/PARITY.md; explain every difference beyond float rounding.
A shim the published code needs belongs in ref_side.py, never in our trainers.
"""
from e2mim_tools.parity import cocoop, coprompt, dept, ivlp, kgcoop, maple, mmrl, prograd, promptsrc, tcp

METHODS = {"cocoop": cocoop, "prograd": prograd, "kgcoop": kgcoop, "ivlp": ivlp, "maple": maple,
           "promptsrc": promptsrc, "tcp": tcp, "dept": dept, "mmrl": mmrl,
           "coprompt": coprompt}
