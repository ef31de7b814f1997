"""taskonomy: compute a task-transfer taxonomy the way Taskonomy (Zamir et al., CVPR 2018) did.

Library modules (no side effects on import): ``config`` (params), ``bank`` (rendered data on disk),
``render`` (the synthetic task bank), ``affinity`` (win rates, AHP), ``taxonomy`` (the BIP).
Entry points live in ``stages/`` (DVC) and ``taskonomy.cli`` (the ``taskonomy`` command).
"""
__version__ = "0.1.0"
