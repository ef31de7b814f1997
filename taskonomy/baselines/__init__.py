"""The sibling baselines, each a model or objective plugged into the one training loop: fine-tuning
(``finetune``: which pretrained network to start a target from, and how much of it to train)."""
