"""The one matplotlib set-up: the headless Agg backend, chosen here and only where a figure is drawn
(matplotlib is not imported by modules that merely could draw), and figures saved atomically."""
from __future__ import annotations

from pathlib import Path

from taskonomy.storage import atomic_path


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend (no display: stages run headless)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """``fig.savefig`` through a temporary file (the format comes from ``path``'s suffix), then close
    the figure, which every caller is done with. Returns ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    pyplot().close(fig)
    return Path(path)
