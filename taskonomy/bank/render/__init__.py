"""The synthetic task bank: procedural rooms rendered by vectorised ray casting, with every task's label.

Modules, one concept each: ``scene`` (rooms, objects, materials, lights), ``camera`` (where views stand
and look), ``raycast`` (ray / primitive intersection), ``shading`` (albedo, lights, shadows), ``labels``
and ``segment`` (dense labels from image and geometry), ``views`` (view and pair labels: layout, poses,
jigsaw), ``domain`` (the target domain: other appearance, the same geometry), ``split`` (one split end to
end, the bank and the target domain's bank), ``sheet`` (the sample figures). The arrays it writes are
specified in docs/bank-format.md.
"""
from taskonomy.bank.render.domain import Domain
from taskonomy.bank.render.split import (SPLITS, TARGET_SPLITS, render_bank, render_split, render_target_bank,
                                         split_seed)

__all__ = ["SPLITS", "TARGET_SPLITS", "Domain", "render_bank", "render_split", "render_target_bank", "split_seed"]
