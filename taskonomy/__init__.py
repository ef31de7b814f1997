"""taskonomy: compute a task-transfer taxonomy the way Taskonomy (Zamir et al., CVPR 2018) did.

Library modules (no side effects on import): ``config`` (params), ``bank`` (rendered data on disk),
``render`` (the synthetic task bank), ``affinity`` (win rates, AHP), ``taxonomy`` (the BIP).
Entry points live in ``stages/`` (DVC) and ``taskonomy.cli`` (the ``taskonomy`` command).

One deliberate exception, here: ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (only if unset). torch's
GNU OpenMP threads otherwise spin while they wait, and on a shared machine a 2-thread training step
then ran 7-10x slower as soon as another job held a core (measured under load 7: 101 ms/step passive
vs 730-1200 ms spinning; 208 ms with one thread). It takes effect only if taskonomy is imported before
torch, as the stage scripts do.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
