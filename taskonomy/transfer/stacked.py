"""Readouts of one transfer at several seeds trained as one batched model (``torch.func``).

A transfer is read out at ``transfer.seeds`` seeds: the same architecture, each with its own initial
weights and its own shuffle of the training items. :func:`fit_stacked` trains them together: their
weights and BatchNorm buffers stacked (``torch.func.stack_module_state``), one ``vmap`` of the module
over the seeds per step, each seed fed its own batch, the summed loss back-propagated (each seed's
weights get only their own gradients) and one optimizer over the stacked weights (Adam, AdamW and SGD
update element by element, so this is each seed's own update). On a GPU this turns S small, launch-bound
readouts into one of S times the work; on a CPU it is no faster (benchmarks/gpu.py), so ``auto`` batches
only on CUDA.

Equal to separate runs up to float reassociation, except dropout (the FC heads'): its masks are drawn
per seed from one stream, so they are other draws than a separate run's. Gradient clipping would couple
the seeds (one norm), so a run with ``grad_clip`` is never batched.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from taskonomy.nets.train import (BatchSource, LossFn, LossWatch, LoopConfig, ParamGroup, _naming_oom, _optimizer,
                                  _schedule, autocast, cpu_kernels, epoch_order, epoch_steps, place_data,
                                  resolve_device)


def batches_seeds(mode: str, device: str, seeds: int, grad_clip: float) -> bool:
    """Whether a transfer's seeds train as one batched model: ``on``, ``off``, or ``auto`` (on CUDA)."""
    if seeds < 2 or grad_clip > 0 or mode == "off":
        return False
    return mode == "on" or resolve_device(device).type == "cuda"


def fit_stacked(models: Sequence[nn.Module], data: BatchSource, loss_fn: LossFn, cfgs: Sequence[LoopConfig], *,
                name: str) -> None:
    """Train ``models`` (one per seed, same architecture) in place, each with its ``cfgs`` entry (the same
    settings but for the seed), as :func:`taskonomy.nets.train.fit` would train each without a checkpoint."""
    cfg = cfgs[0]
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for m in models:
        m.to(device, memory_format=fmt).train()
    params, buffers = stack_module_state(list(models))            # name -> (S, ...) leaves, trained in place
    base = copy.deepcopy(models[0]).to("meta")

    def forward(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = vmap(forward, randomness="different")
    n = len(data)
    batch_size, steps = epoch_steps(cfg, n)
    optimizer = _optimizer(None, cfg, [ParamGroup(tuple(params.values()))], fused=cuda)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, steps * cfg.epochs))
    torch.manual_seed(cfg.seed)
    placed = place_data(data, device, name)
    items_on = device if placed is not data else torch.device("cpu")
    with cpu_kernels(models[0], device), _naming_oom(name, batch_size):
        for epoch in range(cfg.epochs):
            orders = [epoch_order(c.seed, epoch, n, items_on) for c in cfgs]
            watch = LossWatch(device)
            for step in range(steps):
                parts = [placed.batch(o[step * batch_size:(step + 1) * batch_size]).to(device) for o in orders]
                with autocast(device):
                    pred = batched(params, buffers, torch.stack([b.x for b in parts]))
                losses = torch.stack([loss_fn(pred[s], b).float().mean() for s, b in enumerate(parts)])
                objective = losses.sum()
                watch.add(step, losses.mean(), objective, name, epoch)
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                optimizer.step()
                scheduler.step()
            watch.finish(name, epoch)
    with torch.no_grad():
        for s, m in enumerate(models):
            for key, value in m.named_parameters():
                value.copy_(params[key][s])
            for key, value in m.named_buffers():
                value.copy_(buffers[key][s])
