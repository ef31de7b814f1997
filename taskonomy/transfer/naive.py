"""The reference ("naive") transfer: one (source, target) pair per process, encoder run on every batch.

This is what a DVC stage per pair would do, and what the engine (taskonomy.transfer.engine) must agree with:
import, load the bank, load the source network, and train the readout with the frozen encoder inside
the model, so every batch of every epoch goes through the encoder again. The standardisation moments
come from one extra pass over the transfer split, as the engine's do. Same seeds, same data order,
same initialisation as the engine, so the per-item losses match up to floating-point reassociation
(the encoder sees batches of another size). Used by the benchmark and the tests; not by the pipeline.

    python -m taskonomy.transfer.naive SOURCE TARGET --bank B --model M --params P --out losses.npy
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from taskonomy.stage import run_main
from taskonomy.transfer.readout import Readout
from taskonomy.transfer.engine import (FrozenEncoder, TaskLoss, build_readout, channel_moments, encode_views,
                                load_source_encoder, load_targets, loop_config)


class EncodeEveryBatch(nn.Module):
    """(B, k, 3, H, W) -> frozen encoder -> standardise -> readout."""

    def __init__(self, encoder: nn.Module, mean: torch.Tensor, std: torch.Tensor, readout: Readout):
        super().__init__()
        self.encoder = FrozenEncoder(encoder)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        rep = (self.encoder(x.flatten(0, 1)) - self.mean) / self.std   # (B*k, C, h, w)
        return self.readout(rep.view(b, k, *rep.shape[1:]))           # (B, k, C, h, w)


def naive_transfer(splits, encoder: nn.Module, source: str, target: str, params, net,
                   device: str = "cpu") -> np.ndarray:
    """Per-item test losses of ``source -> target`` trained with the encoder inside the loop."""
    from taskonomy.nets.train import evaluate_per_item, fit

    data = load_targets(splits, [target], params.images)[target]
    task = data["test"].task
    mean, std = channel_moments(encode_views(encoder, data["transfer"].views, device=device,
                                                transform=data["transfer"].task.transform))
    width = encoder.out_channels
    rep_hw = data["test"].resolution // net.bottleneck_stride
    readout = build_readout((source,), task, width, width, rep_hw, params, net)
    model = EncodeEveryBatch(encoder, mean, std, readout)
    loss = TaskLoss(task)
    fit(model, data["transfer"], loss, loop_config(params, target, device), name=f"naive {source}->{target}")
    return evaluate_per_item(model, data["test"], loss)


def main(argv: list[str] | None = None) -> int:
    from taskonomy.bank import load_splits
    from taskonomy.config import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--bank", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    splits = load_splits(args.bank)
    encoder = load_source_encoder(args.model, args.source)
    np.save(args.out, naive_transfer(splits, encoder, args.source, args.target, params.transfer, params.train_task))
    return 0


if __name__ == "__main__":
    run_main(main)
