"""taskonomy: compute a task-transfer taxonomy the way Taskonomy (Zamir et al., CVPR 2018) did.

Library modules (no side effects on import): ``config`` (params), ``bank`` (rendered data on disk),
``render`` (the synthetic task bank), ``affinity`` (win rates, AHP), ``taxonomy`` (the BIP).
Entry points live in ``stages/`` (DVC) and ``taskonomy.cli`` (the ``taskonomy`` command).

OpenMP's wait policy is left to the environment. ``OMP_WAIT_POLICY=PASSIVE`` used to be set here; once
the stage scripts imported taskonomy before torch (the fork server), it made every 2-thread training
step 1.7x slower on a quiet machine (``benchmarks/threads.py``). On a machine where other jobs hold
cores, ``train_task.threads: 1`` is the faster setting (see the README).
"""

__version__ = "0.1.0"
