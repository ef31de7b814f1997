"""Sample sheets of a task network: input / ground truth / prediction for a few test items.

One row per item. Inputs show every view of the item side by side (jigsaw: the 3x3 tiles as shuffled).
Dense outputs are images (1 channel: gray; 2: the first; 3: RGB after per-image min-max; classes:
arg-max colours; embeddings: first three channels, and the sampled segment ids as ground truth);
vector outputs are bars (classes as probabilities).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from taskonomy.nets.data import TaskData
from taskonomy.plotting import pyplot, save_figure
from taskonomy.tasks import Encoding, Kind


def _input_image(x: torch.Tensor, kind: Kind) -> np.ndarray:
    """(k, 3, h, w) in [-1, 1] -> (H, W, 3) in [0, 1]: views side by side, tiles as a 3x3 grid."""
    views = ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()         # (k, h, w, 3)
    if kind is Kind.TILE_CLASSIFICATION:
        rows = [np.concatenate(list(views[r * 3:(r + 1) * 3]), axis=1) for r in range(3)]
        return np.concatenate(rows, axis=0)
    return np.concatenate(list(views), axis=1)


def _map_image(m: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """(C, H, W) real map -> an image and a colormap."""
    if m.shape[0] >= 3:
        rgb = m[:3].permute(1, 2, 0).numpy()
        lo, hi = rgb.min(), rgb.max()
        return (rgb - lo) / max(hi - lo, 1e-6), None
    return m[0].numpy(), "gray"


def _segments_image(samples: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """(n, 2) sampled (pixel, id) -> (H, W) float image, NaN where not sampled."""
    img = np.full(hw[0] * hw[1], np.nan)
    img[samples[:, 0].numpy()] = samples[:, 1].numpy()
    return img.reshape(hw)


def prediction_sheet(data: TaskData, pred: torch.Tensor, items: torch.Tensor, path: Path) -> Path:
    """Save a sheet for ``items`` of ``data`` with the model's ``pred`` for those items."""
    task = data.task
    batch = data.batch(items)
    n = len(items)
    plt = pyplot()
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.3 * n), squeeze=False)
    for row in range(n):
        ax_in, ax_gt, ax_pred = axes[row]
        ax_in.imshow(_input_image(batch.x[row], task.kind))
        y, p = batch.y[row], pred[row]
        if task.kind is Kind.DENSE_CLASSIFICATION:
            ax_gt.imshow(y.numpy(), cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
            ax_pred.imshow(p.argmax(0).numpy(), cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
        elif task.kind is Kind.DENSE_EMBEDDING:
            ax_gt.imshow(_segments_image(y, p.shape[1:]), cmap="tab20", interpolation="nearest")
            ax_pred.imshow(_map_image(p)[0])
        elif task.kind.dense:
            for ax, m in ((ax_gt, y), (ax_pred, p)):
                img, cmap = _map_image(m)
                ax.imshow(img, cmap=cmap)
        else:
            if task.encoding in (Encoding.INDEX, Encoding.SOFT):
                truth = torch.nn.functional.one_hot(y, task.out_channels).float() if y.dim() == 0 else y
                shown = torch.softmax(p, 0)
            else:
                truth, shown = y, p
            pos = np.arange(len(truth))
            ax_gt.bar(pos, truth.numpy(), color="tab:green")
            ax_pred.bar(pos, shown.numpy(), color="tab:blue")
            for ax in (ax_gt, ax_pred):
                ax.set_ylim(min(0.0, float(truth.min()), float(shown.min())) - 0.1,
                            max(float(truth.max()), float(shown.max())) + 0.1)
        for ax in (ax_in, ax_gt, ax_pred):
            if task.kind.dense or ax is ax_in:
                ax.set_xticks([]), ax.set_yticks([])
    for ax, title in zip(axes[0], ("input", "ground truth", "prediction")):
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{task.name} ({task.kind.value}), test items {items.tolist()}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def random_encoder_sheet(image: torch.Tensor, rep: torch.Tensor, path: Path) -> Path:
    """For the untrained source: input images and the first channels of their representation."""
    n, channels = rep.shape[0], min(rep.shape[1], 4)
    plt = pyplot()
    fig, axes = plt.subplots(n, 1 + channels, figsize=(1.8 * (1 + channels), 1.8 * n), squeeze=False)
    for row in range(n):
        axes[row, 0].imshow(_input_image(image[row:row + 1], Kind.REGRESSION))
        for c in range(channels):
            axes[row, 1 + c].imshow(rep[row, c].numpy(), cmap="viridis")
        for ax in axes[row]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    for c in range(channels):
        axes[0, 1 + c].set_title(f"channel {c}", fontsize=8)
    fig.suptitle("random: untrained encoder representation", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)
