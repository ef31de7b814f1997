"""taskonomy: compute a task-transfer taxonomy the way Taskonomy (Zamir et al., CVPR 2018) did.

The library has no side effects on import. At the top: ``config`` (params), ``tasks`` (the registry),
``sources`` and ``losses`` (what stages hand each other); one sub-package per part of the pipeline:
``bank`` (the on-disk bank and its renderer), ``nets`` (networks and the one training loop),
``transfer`` (readouts and the higher-order beam), ``analysis`` (AHP affinities, the BIP, the checks),
``report``. Entry points live in ``stages/`` (DVC) and ``taskonomy.cli`` (the ``taskonomy`` command).

OpenMP's wait policy is left to the environment. ``OMP_WAIT_POLICY=PASSIVE`` used to be set here; once
the stage scripts imported taskonomy before torch, it made every 2-thread training step 1.7x slower
on a quiet machine (``benchmarks/threads.py``). On a machine where other jobs hold
cores, ``train_task.threads: 1`` is the faster setting (see the README).
"""

__version__ = "0.1.0"
