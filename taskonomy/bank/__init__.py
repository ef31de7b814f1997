"""The task bank: every label of every task for the train, transfer and test splits.

``splits`` is the on-disk format that every stage reads (docs/bank-format.md); ``render`` makes a bank
from procedural rooms, ``real`` reads one from a real Taskonomy download (docs/real-data.md). The format's API is re-exported here: ``load_split``, ``load_splits``,
``write_split``, ``write_manifest``, ``read_manifest``, ``check_same_bank``, ``Split``.
"""
from taskonomy.bank.splits import (FORMAT, MANIFEST, Split, check_same_bank, load_split, load_splits, read_manifest,
                                   write_manifest, write_split)

__all__ = ["FORMAT", "MANIFEST", "Split", "check_same_bank", "load_split", "load_splits", "read_manifest",
           "write_manifest", "write_split"]
