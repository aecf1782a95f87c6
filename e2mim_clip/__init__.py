"""The CLIP pieces every method shares: the one CLIP loader (``loader``), the one text encoder
and prompt builder (``prompting``), the hand-crafted template sets (``templates``) and the
trainer base for prompt methods (``prompt_trainer``). Method code never lives here."""
