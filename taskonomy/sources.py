"""What a transfer reads from, and how it is named: the one place that knows the pseudo-sources and keys.

A transfer predicts a *target* from a *source set*: the frozen representations of one or more task
networks (its *order* is their number), or one of three pseudo-sources that every target has:

- ``self``: the target's own task network, the gold standard (quality = win rate against it);
- ``random``: an untrained encoder; it is a task of the registry and a source like any other;
- ``pixels``: a network trained from scratch on the transfer split (gain = win rate against it).

A source set's *key* joins its names in order with ``__`` (``rgb2sfnorm__reshade``); Taskonomy's
published pickles append the target (``'rgb2sfnorm__reshade__rgb2depth'``): a *transfer key*.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from taskonomy.errors import DataError

SELF = "self"
RANDOM = "random"
PIXELS = "pixels"
SEP = "__"
BASELINES = frozenset({SELF, PIXELS})   # never a task: the two sources every transfer is compared with
NOT_BEAM = frozenset({SELF, PIXELS, RANDOM})   # never part of a higher-order source set


def set_key(sources: Iterable[str]) -> str:
    """The key of a source set: its names joined by ``__``."""
    return SEP.join(sources)


def parse(source_key: str) -> tuple[str, ...]:
    """The names of a source set from its key."""
    return tuple(source_key.split(SEP))


def order(source_key: str) -> int:
    """How many task representations a source set reads: 0 for ``self`` and ``pixels``."""
    return 0 if source_key in BASELINES else len(parse(source_key))


def transfer_key(sources: Sequence[str], target: str) -> str:
    """``'src1__...__srcK__target'``, the key of Taskonomy's published pickles."""
    return set_key((*sources, target))


def parse_transfer_key(transfer: str, where: str) -> tuple[tuple[str, ...], str]:
    """``'a__b__t'`` -> (('a', 'b'), 't'); a key without a source or with an empty name is a
    :class:`DataError` naming ``where``."""
    parts = transfer.split(SEP) if isinstance(transfer, str) else []
    if len(parts) < 2 or not all(parts):
        raise DataError(f"{where}: key {transfer!r} is not of the form 'source1__...__target'")
    return tuple(parts[:-1]), parts[-1]
