"""Benchmark of the GPU data path and throughput per phase: task networks, encoding, readouts. Runs on
CUDA at the gpu-128 profile's settings, and on the CPU at small sizes (the default params' networks).

    .venv/bin/python benchmarks/gpu.py [--profile gpu-128] [--resolution R] [--views V] [--steps N]

Data: a synthetic split of ``--views`` random uint8 images with a 3-channel dense target and a mask
(rgb2sfnorm's shapes), held as a stage holds it (taskonomy.nets.data.TaskData). Variants of the task
network's loop, in one run:
- ``device data``: the split on the GPU (what ``fit`` does on CUDA): batches gathered and decoded there;
- ``host data``: the split in host memory, each batch gathered, decoded and copied over (the path
  before issue 26, with uint8 images instead of float32);
- ``host float32``: the split pre-decoded to float32 on the host (the CPU's path before issue 26).
Per variant: items/s of the training step, and the data wait, the share of a step spent gathering,
decoding and copying its batch (timed with a device sync after the batch and after the step; the sync
itself is what ``fit`` avoids, so the items/s of ``fit`` over the same steps are printed too).
Then encoding (a task network's encoder over every view, bf16 autocast on CUDA) and readouts (a
transfer function and a dense head on cached representations, as a transfer stage trains them), each
transfer at ``transfer.seeds`` seeds trained one per seed and as one batched model
(taskonomy.transfer.stacked; ``transfer.batch_seeds``), ratio = speed-up of batching.

The last line: ``gpu: <N> task-network items/s at <R> px, data wait <W>% of step time (<device>)``
for the variant ``fit`` uses on that device.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from taskonomy.config import load_params
from taskonomy.nets.data import TaskData
from taskonomy.nets.models import build_encoder, build_task_network
from taskonomy.nets.train import LoopConfig, autocast, channels_last_inputs, fit, resolve_device, task_loss
from taskonomy.profiles import load_profile
from taskonomy.tasks import get_task
from taskonomy.transfer.engine import build_readout, encode_views
from taskonomy.transfer.stacked import fit_stacked

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_split(views: int, resolution: int, seed: int = 0) -> TaskData:
    gen = torch.Generator().manual_seed(seed)
    task = get_task("rgb2sfnorm")
    images = torch.randint(0, 256, (views, 1, 3, resolution, resolution), generator=gen, dtype=torch.uint8)
    target = torch.randn(views, 3, resolution, resolution, generator=gen)
    mask = torch.rand(views, 1, resolution, resolution, generator=gen) > 0.1
    return TaskData(task, images, torch.arange(views).unsqueeze(1), target, mask)


def time_steps(model, data: TaskData, loss_fn, cfg: LoopConfig, device: torch.device, steps: int) -> tuple[float, float]:
    """(items/s, data wait share) of ``steps`` training steps, synced after the batch and after the step."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=device.type == "cuda" or None)
    gen = torch.Generator().manual_seed(1)
    wait = total = 0.0
    for step in range(steps + 3):                       # 3 warm-up steps (cudnn.benchmark picks kernels)
        items = torch.randint(len(data), (cfg.batch_size,), generator=gen).to(data.index.device)
        t0 = time.perf_counter()
        batch = data.batch(items).to(device)
        if cfg.channels_last and device.type == "cuda":      # as fit feeds it
            batch = channels_last_inputs(batch)
        sync(device)
        t1 = time.perf_counter()
        with autocast(device):
            pred = model(batch.x)
        loss = loss_fn(pred, batch).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        t2 = time.perf_counter()
        if step >= 3:
            wait, total = wait + (t1 - t0), total + (t2 - t0)
    return steps * cfg.batch_size / total, wait / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="params profile (default: gpu-128 on CUDA, none on CPU)")
    parser.add_argument("--resolution", type=int, default=None, help="default: the profile's (CUDA), 32 (CPU)")
    parser.add_argument("--views", type=int, default=None, help="split size (default 4096 on CUDA, 512 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 40 CUDA, 10 CPU)")
    parser.add_argument("--readouts", type=int, default=4, help="transfers timed per readout variant")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default; a transfer stage's "
                        "workers run 1 each)")
    args = parser.parse_args()

    device = resolve_device("auto")
    cuda = device.type == "cuda"
    profile = args.profile or ("gpu-128" if cuda else None)
    params = load_params(ROOT / "params.yaml", load_profile(profile) if profile else None)
    net = replace(params.train_task, device="auto")
    resolution = args.resolution or (params.render.resolution if cuda else 32)
    views, steps = args.views or (4096 if cuda else 512), args.steps or (40 if cuda else 10)
    cfg = LoopConfig.from_params(net, device="auto")
    if args.threads:
        torch.set_num_threads(args.threads)
    host = synthetic_split(views, resolution)
    loss_fn = task_loss(host.task)
    name = torch.cuda.get_device_name(device) if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; {views} views of {resolution} px; {net.arch} width {net.width}, batch {cfg.batch_size}, "
          f"{steps} steps per variant; params: {profile or 'params.yaml'}")
    fmt = torch.channels_last if net.channels_last else torch.contiguous_format

    variants = {"host data": host,
                "host float32": replace(host, views=(host.views.float() / 127.5 - 1))}
    if cuda:
        torch.backends.cudnn.benchmark = True
        variants = {"device data": host.to(device), **variants}
    rows = {}
    print(f"\n{'task networks':<16} {'items/s':>9} {'data wait':>10} {'ratio':>6}")
    for label, data in variants.items():
        torch.manual_seed(0)
        model = build_task_network(host.task, net, resolution).to(device, memory_format=fmt)
        rows[label] = time_steps(model, data, loss_fn, cfg, device, steps)
    base = rows[next(iter(rows))][0]
    for label, (rate, wait) in rows.items():
        print(f"{label:<16} {rate:>9.1f} {wait:>9.1%} {rate / base:>6.2f}")
    torch.manual_seed(0)
    model = build_task_network(host.task, net, resolution)
    loop = replace(cfg, epochs=1, epoch_items=steps * cfg.batch_size, eval_every=0)
    seconds = fit(model, host, loss_fn, loop, name="bench").seconds
    print(f"{'fit (no syncs)':<16} {steps * cfg.batch_size / seconds:>9.1f} {'':>10} "
          f"{steps * cfg.batch_size / seconds / base:>6.2f}   (includes its own first steps)")

    encoder = build_encoder(net).eval()
    encode_views(encoder, host.views[:64], device=device)          # warm-up
    sync(device)
    t0 = time.perf_counter()
    reps = encode_views(encoder, host.views, device=device)
    sync(device)
    encode_rate = views / (time.perf_counter() - t0)
    print(f"\n{'encoding':<16} {encode_rate:>9.1f} views/s -> {tuple(reps.shape[1:])}")

    transfer = replace(params.transfer, epochs=1, epoch_items=0)
    seeds = max(2, transfer.seeds)
    rep_data = replace(host, views=((reps - reps.mean((0, 2, 3), keepdim=True)) / reps.std((0, 2, 3), keepdim=True)).unsqueeze(1))
    head_net = replace(net, width=transfer.decoder_width or net.width)

    def readouts(r: int) -> list:
        return [build_readout(("edge2d",), host.task, reps.shape[1], reps.shape[1], reps.shape[-1],
                              replace(transfer, seed=r * seeds + k), head_net) for k in range(seeds)]

    loops = lambda r: [LoopConfig.from_params(replace(transfer, seed=r * seeds + k), device="auto")  # noqa: E731
                       for k in range(seeds)]
    timed = {}
    for label in ("one per seed", "seeds batched"):
        t0 = time.perf_counter()
        for r in range(args.readouts):
            if label == "one per seed":
                for model, loop in zip(readouts(r), loops(r)):
                    fit(model, rep_data, loss_fn, loop, name=f"readout {r}")
            else:
                fit_stacked(readouts(r), rep_data, loss_fn, loops(r), name=f"readout {r}")
        sync(device)
        timed[label] = (time.perf_counter() - t0) / (args.readouts * seeds)
    print(f"\n{'readouts':<16} {'s/readout':>9} {'items/s':>10} {'ratio':>6}   ({seeds} seeds of {views} items, "
          f"batch {transfer.batch_size})")
    for label, seconds in timed.items():
        print(f"{label:<16} {seconds:>9.3f} {views / seconds:>10.1f} {timed['one per seed'] / seconds:>6.2f}")

    label = "device data" if cuda else "host data"
    rate, wait = rows[label]
    print(f"gpu: {rate:.0f} task-network items/s at {resolution} px, data wait {wait:.0%} of step time ({name})")


if __name__ == "__main__":
    main()
