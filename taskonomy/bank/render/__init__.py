"""The synthetic task bank: procedural rooms rendered by vectorised ray casting, with every task's label.

Modules, one concept each: ``scene`` (rooms, objects, materials, lights), ``camera`` (where views stand
and look), ``raycast`` (ray / primitive intersection), ``shading`` (albedo, lights, shadows), ``labels``
and ``segment`` (dense labels from image and geometry), ``views`` (view and pair labels: layout, poses,
jigsaw), ``split`` (one split end to end), ``sheet`` (the sample figure). The arrays it writes are
specified in docs/bank-format.md.
"""
from taskonomy.bank.render.split import SPLITS, render_bank, render_split, split_seed

__all__ = ["SPLITS", "render_bank", "render_split", "split_seed"]
