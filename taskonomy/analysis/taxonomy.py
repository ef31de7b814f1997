"""The taxonomy: a binary integer program (BIP) choosing which tasks to supervise under a budget.

Taskonomy §3.4 (Zamir et al., CVPR 2018), with the semantics of the official solver backend
(``taxonomy_api.py``: ``solve_BIP``, ``get_viable_transfers``, ``make_edge_constraints``,
``make_supervision_budget_constraints``; reference notes §5.1).

Every task has one role: ``target`` (wanted solved, may be supervised and serve as a source),
``source-only`` (never solved, may be supervised to serve as a source, e.g. jigsaw, random),
``target-only`` (wanted solved, never supervised nor used as a source) or ``unused``. The
variables are binary: x_e per viable transfer (hyperedge) e = (srcs -> dst), x_s per supervisable
task s (targets and source-only tasks). With c the objective coefficients:

    maximize    Σ_e c_e x_e + Σ_s c_s x_s
    subject to  (I)   Σ_{s ∈ srcs(e)} x_s − |srcs(e)| · x_e ≥ 0        for every edge e
                (II)  x_t + Σ_{e: dst(e)=t} x_e = 1                     for every target t
                      Σ_{e: dst(e)=t} x_e = 1                           for every target-only t
                (III) Σ_s ℓ_s x_s + Σ_e ℓ'_{dst(e)} x_e ≤ γ              (the supervision budget)

    c_e = clip(√P_e, 1e-5, 1) · r_{dst(e)},   c_s = clip(√P_{self→s}, 1e-5, 1) · r_s for a target s,
    c_s = 0 for a source-only s,

where P is the AHP affinity (or, for the other objectives, the quality = win rate against the task
network, or the gain = win rate against the from-scratch ``pixels`` network), r the relative task
values, ℓ the supervision costs (default 1), ℓ' the transfer costs (default 0) and γ the budget
(default 6). The square root is the official solver's (``dists[k] = np.sqrt(v)``); ``sqrt=False``
uses P itself. An edge is viable unless a source is ``self``, unused, target-only or the
destination itself, the destination is source-only or unused, or its order exceeds ``max_order``
(default 5).

:func:`build_problem` turns transfers and roles into a plain :class:`TaxonomyProblem`;
:func:`to_lp` builds the ``pulp.LpProblem``; :func:`solve` solves it with CBC (bundled with PuLP),
:func:`solve_highs` the same problem with ``scipy.optimize.milp`` (HiGHS), as a cross-check.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from taskonomy.errors import DataError, TaskonomyError
from taskonomy.sources import BASELINES, SELF, transfer_key

OBJECTIVES = ("affinity", "quality", "gain")
COEF_MIN, COEF_MAX = 1e-5, 1.0  # the official solver's clip of √P
DEFAULT_BUDGET, DEFAULT_MAX_ORDER = 6.0, 5


class TaxonomyError(TaskonomyError):
    """A taxonomy cannot be set up (unknown task, bad budget, ...) or has no feasible solution."""


@dataclass(frozen=True)
class Transfer:
    """One measured transfer ``sources -> target`` with its scores (NaN where unknown)."""
    sources: tuple[str, ...]
    target: str
    affinity: float
    quality: float = math.nan
    gain: float = math.nan

    @property
    def order(self) -> int:
        return len(self.sources)

    @property
    def key(self) -> str:
        """Taskonomy's key, ``src1__...__srcK__target``."""
        return transfer_key(self.sources, self.target)

    def score(self, objective: str) -> float:
        return float(getattr(self, objective))


@dataclass(frozen=True)
class Roles:
    """Every task in exactly one role (reference §5.1 "Sets")."""
    targets: tuple[str, ...]
    source_only: tuple[str, ...] = ()
    target_only: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.targets + self.source_only + self.target_only + self.unused

    @property
    def supervisable(self) -> tuple[str, ...]:
        """Tasks with a supervision variable x_s: targets and source-only tasks."""
        return self.targets + self.source_only

    def role(self, task: str) -> str:
        for name, members in (("target", self.targets), ("source-only", self.source_only),
                              ("target-only", self.target_only), ("unused", self.unused)):
            if task in members:
                return name
        raise KeyError(task)


def task_names(transfers: Iterable[Transfer]) -> list[str]:
    """Every task named by the transfers (sources and targets, not ``self``/``pixels``), in order."""
    names = {}
    for tr in transfers:
        for name in (*tr.sources, tr.target):
            if name not in BASELINES:
                names.setdefault(name, None)
    return list(names)


def assign_roles(transfers: Sequence[Transfer], source_only: Iterable[str] = (),
                 target_only: Iterable[str] = (), unused: Iterable[str] = ()) -> Roles:
    """Roles of all tasks: the named overrides, otherwise ``target`` if some transfer leads into
    the task and ``source-only`` if it appears only as a source (the API's default for the
    published data's colorization, jigsaw, in-painting, random).

    Raises :class:`TaxonomyError` naming a task that is unknown or given two roles.
    """
    tasks = task_names(transfers)
    known = set(tasks)
    overrides: dict[str, str] = {}
    for role, names in (("source-only", source_only), ("target-only", target_only), ("unused", unused)):
        for name in names:
            if name not in known:
                raise TaxonomyError(f"{role} task '{name}' is not a task of the affinities "
                                    f"(known: {', '.join(sorted(known))})")
            if overrides.get(name, role) != role:
                raise TaxonomyError(f"task '{name}' is given two roles: {overrides[name]} and {role}")
            overrides[name] = role
    is_target = {tr.target for tr in transfers}
    role_of = {t: overrides.get(t, "target" if t in is_target else "source-only") for t in tasks}
    pick = lambda role: tuple(t for t in tasks if role_of[t] == role)  # noqa: E731
    return Roles(pick("target"), pick("source-only"), pick("target-only"), pick("unused"))


@dataclass(frozen=True)
class Edge:
    """A viable hyperedge of the BIP: its transfer, objective coefficient c_e and cost ℓ'_dst."""
    transfer: Transfer
    value: float
    cost: float = 0.0


@dataclass(frozen=True)
class TaxonomyProblem:
    """Everything the BIP needs, as plain data (see the module docstring for the program)."""
    roles: Roles
    edges: tuple[Edge, ...]
    supervise_value: Mapping[str, float]  # c_s for every supervisable task
    supervise_cost: Mapping[str, float]   # ℓ_s for every supervisable task
    budget: float
    max_order: int
    objective: str = "affinity"
    sqrt: bool = True
    self_transfers: Mapping[str, Transfer] = field(default_factory=dict)  # target -> its `self` row

    @property
    def supervisable(self) -> tuple[str, ...]:
        return self.roles.supervisable


def _coefficient(score: float, value: float, sqrt: bool) -> float:
    """c = clip(√P, 1e-5, 1) · r (or clip(P, 1e-5, 1) · r without the square root)."""
    p = math.sqrt(max(score, 0.0)) if sqrt else score
    return min(max(p, COEF_MIN), COEF_MAX) * value


def _check_task_numbers(kind: str, numbers: Mapping[str, float] | None, known: set[str]) -> dict[str, float]:
    numbers = dict(numbers or {})
    for task, x in numbers.items():
        if task not in known:
            raise TaxonomyError(f"{kind} given for unknown task '{task}' (known: {', '.join(sorted(known))})")
        if not (isinstance(x, (int, float)) and math.isfinite(x) and x >= 0):
            raise TaxonomyError(f"{kind} of task '{task}' must be a finite number >= 0, got {x!r}")
    return numbers


def check_budget(budget: float) -> float:
    """γ as a float; a :class:`TaxonomyError` unless it is a finite number >= 0."""
    if isinstance(budget, bool) or not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget >= 0):
        raise TaxonomyError(f"budget must be a finite number >= 0, got {budget!r}")
    return float(budget)


def build_problem(transfers: Sequence[Transfer], roles: Roles, *, budget: float = DEFAULT_BUDGET,
                  max_order: int = DEFAULT_MAX_ORDER, costs: Mapping[str, float] | None = None,
                  values: Mapping[str, float] | None = None,
                  transfer_costs: Mapping[str, float] | None = None,
                  objective: str = "affinity", sqrt: bool = True) -> TaxonomyProblem:
    """The BIP's data: viable edges with their coefficients, supervision values and costs.

    Args:
        transfers: every measured transfer, including one ``self -> t`` per target t (the value of
            supervising t) and optionally ``random -> t``; ``pixels`` rows are ignored.
        roles: from :func:`assign_roles`.
        budget: γ >= 0. max_order: the largest number of sources of a usable transfer, >= 1.
        costs: ℓ_s per task (default 1). values: r_t per task (default 1).
        transfer_costs: ℓ'_t, cost of a transfer into t (default 0).
        objective: ``affinity`` (P), ``quality`` or ``gain``. sqrt: c = √score (official) or score.
    Raises:
        TaxonomyError naming the parameter, task or transfer that makes the problem ill-posed.
    """
    if objective not in OBJECTIVES:
        raise TaxonomyError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    budget = check_budget(budget)
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 1:
        raise TaxonomyError(f"max order must be an integer >= 1, got {max_order!r}")
    known = set(roles.tasks)
    costs = _check_task_numbers("cost", costs, known)
    values = _check_task_numbers("value", values, known)
    transfer_costs = _check_task_numbers("transfer cost", transfer_costs, known)
    if not roles.targets and not roles.target_only:
        raise TaxonomyError("no task to solve: every task is source-only or unused")

    def score(tr: Transfer) -> float:
        s = tr.score(objective)
        if not math.isfinite(s):
            raise TaxonomyError(f"transfer {tr.key} has no {objective} score")
        return s

    supervisable, wanted = set(roles.supervisable), set(roles.targets) | set(roles.target_only)
    self_transfers, edges, seen = {}, [], set()
    for tr in transfers:
        if tr.sources == (SELF,):
            if tr.target in roles.targets:
                self_transfers[tr.target] = tr
            continue
        if any(s in BASELINES for s in tr.sources):
            continue  # pixels (and self mixed with tasks, which never occurs) are not transfers
        if (tr.target not in wanted or tr.order > max_order or tr.target in tr.sources
                or not all(s in supervisable for s in tr.sources)):
            continue
        ident = (frozenset(tr.sources), tr.target)
        if ident in seen:
            raise TaxonomyError(f"transfer {tr.key} is listed twice")
        seen.add(ident)
        edges.append(Edge(tr, _coefficient(score(tr), values.get(tr.target, 1.0), sqrt),
                          transfer_costs.get(tr.target, 0.0)))

    supervise_value = {}
    for s in roles.supervisable:
        if s in roles.targets:
            if s not in self_transfers:
                raise TaxonomyError(f"target '{s}' has no '{SELF}' transfer (the value of supervising it); "
                                    "make it target-only or unused")
            supervise_value[s] = _coefficient(score(self_transfers[s]), values.get(s, 1.0), sqrt)
        else:
            supervise_value[s] = 0.0
    served = {e.transfer.target for e in edges}
    for t in roles.target_only:
        if t not in served:
            raise TaxonomyError(f"target-only task '{t}' has no usable transfer into it "
                                f"(max order {max_order}, sources must be targets or source-only)")
    return TaxonomyProblem(
        roles=roles, edges=tuple(edges), supervise_value=supervise_value,
        supervise_cost={s: float(costs.get(s, 1.0)) for s in roles.supervisable},
        budget=float(budget), max_order=max_order, objective=objective, sqrt=sqrt,
        self_transfers=self_transfers)


# --------------------------------------------------------------------------------------------------
# The program: PuLP model and the same program as arrays (for scipy/HiGHS)
# --------------------------------------------------------------------------------------------------

@dataclass
class LpModel:
    """A built ``pulp.LpProblem`` with its variables (x_e in edge order, x_s by task)."""
    problem: object
    edge_vars: list
    supervise_vars: dict
    budget_constraint: object

    def set_budget(self, budget: float) -> None:
        """Change γ in place (only the right-hand side of (III) changes across a budget sweep)."""
        self.budget_constraint.constant = -float(budget)


FORMULATIONS = ("strong", "official")


def source_groups(problem: TaxonomyProblem) -> dict[tuple[str, str], list[int]]:
    """(target, source) -> indices of the edges into target that use source."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(problem.edges):
        for s in e.transfer.sources:
            groups.setdefault((e.transfer.target, s), []).append(i)
    return groups


def to_lp(problem: TaxonomyProblem, name: str = "taxonomy", formulation: str = "strong") -> LpModel:
    """Build the ``pulp.LpProblem`` of :func:`build_problem`'s data (constraints I-III).

    ``formulation="official"`` writes (I) as the official solver did, one row per edge,
    ``Σ_{s∈srcs(e)} x_s − |srcs(e)| x_e ≥ 0``. ``"strong"`` (default) writes it per (target t,
    source s): ``Σ_{e→t, s∈srcs(e)} x_e ≤ x_s``. Given (II) at most one edge into t is chosen, so
    both admit exactly the same 0/1 points and have the same optimum; but the strong rows (the
    classic strong facility-location form) have a far tighter LP relaxation: on the published 16k
    data it is already integral, and CBC's branch and bound at max order 5 drops from ~1.5 s to
    ~20 ms per solve. It also has fewer rows (|targets| x |sources| instead of |E|).
    """
    import pulp

    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    lp = pulp.LpProblem(name, pulp.LpMaximize)
    # PuLP >= 3 creates variables through the model; older PuLP only has the constructor
    new = (lambda n: lp.add_variable(n, 0, 1, pulp.LpBinary)) if hasattr(lp, "add_variable") else (
        lambda n: pulp.LpVariable(n, cat=pulp.LpBinary))
    xe = [new(f"e{i}") for i in range(len(problem.edges))]
    xs = {s: new(f"s{j}") for j, s in enumerate(problem.supervisable)}
    lp += (pulp.lpSum(e.value * x for e, x in zip(problem.edges, xe))
           + pulp.lpSum(problem.supervise_value[s] * x for s, x in xs.items()))
    if formulation == "official":
        for i, (e, x) in enumerate(zip(problem.edges, xe)):
            lp += pulp.lpSum(xs[s] for s in e.transfer.sources) - e.transfer.order * x >= 0, f"I_{i}"
    else:
        for j, ((_, s), idx) in enumerate(source_groups(problem).items()):
            lp += xs[s] - pulp.lpSum(xe[i] for i in idx) >= 0, f"I_{j}"
    incoming: dict[str, list] = {}
    for e, x in zip(problem.edges, xe):
        incoming.setdefault(e.transfer.target, []).append(x)
    for j, t in enumerate(problem.roles.targets):
        lp += xs[t] + pulp.lpSum(incoming.get(t, [])) == 1, f"II_t{j}"
    for j, t in enumerate(problem.roles.target_only):
        lp += pulp.lpSum(incoming[t]) == 1, f"II_o{j}"
    budget = (pulp.lpSum(problem.supervise_cost[s] * x for s, x in xs.items())
              + pulp.lpSum(e.cost * x for e, x in zip(problem.edges, xe) if e.cost))
    lp += budget <= problem.budget, "III_budget"
    by_name = getattr(lp, "get_constraint_by_name", None)
    return LpModel(lp, xe, xs, by_name("III_budget") if by_name else lp.constraints["III_budget"])


@dataclass(frozen=True)
class MilpArrays:
    """The BIP as ``max cᵀx, lo <= A x <= hi, x ∈ {0,1}^n``; x = [x_e (edge order), x_s (supervisable)]."""
    c: np.ndarray
    a: object  # scipy.sparse.csr_array (m, n)
    lo: np.ndarray
    hi: np.ndarray
    budget_row: int


def to_arrays(problem: TaxonomyProblem, formulation: str = "strong") -> MilpArrays:
    """The same program as :func:`to_lp` (same ``formulation``), as sparse arrays."""
    from scipy import sparse

    n_e, sup = len(problem.edges), problem.supervisable
    col = {s: n_e + j for j, s in enumerate(sup)}
    rows, cols, vals, lo, hi = [], [], [], [], []

    def row(entries, low, high):
        r = len(lo)
        for c_, v in entries:
            rows.append(r), cols.append(c_), vals.append(v)
        lo.append(low), hi.append(high)

    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}, got {formulation!r}")
    if formulation == "official":  # (I)
        for i, e in enumerate(problem.edges):
            row([(col[s], 1.0) for s in e.transfer.sources] + [(i, -float(e.transfer.order))], 0.0, np.inf)
    else:
        for (_, s), idx in source_groups(problem).items():
            row([(col[s], 1.0)] + [(i, -1.0) for i in idx], 0.0, np.inf)
    incoming: dict[str, list[int]] = {}
    for i, e in enumerate(problem.edges):
        incoming.setdefault(e.transfer.target, []).append(i)
    for t in problem.roles.targets:  # (II)
        row([(col[t], 1.0)] + [(i, 1.0) for i in incoming.get(t, [])], 1.0, 1.0)
    for t in problem.roles.target_only:
        row([(i, 1.0) for i in incoming[t]], 1.0, 1.0)
    budget_row = len(lo)  # (III)
    row([(col[s], problem.supervise_cost[s]) for s in sup]
        + [(i, e.cost) for i, e in enumerate(problem.edges) if e.cost], -np.inf, problem.budget)
    c = np.array([e.value for e in problem.edges] + [problem.supervise_value[s] for s in sup])
    a = sparse.csr_array((vals, (rows, cols)), shape=(len(lo), len(c)))
    return MilpArrays(c, a, np.array(lo), np.array(hi), budget_row)


# --------------------------------------------------------------------------------------------------
# Solving and the result
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    """How one wanted task is solved: by supervision (``sources == ('self',)``) or a transfer."""
    sources: tuple[str, ...]
    affinity: float
    quality: float
    gain: float


@dataclass(frozen=True)
class Taxonomy:
    """A solved BIP. ``status`` is ``optimal`` or the solver's word (``infeasible``, ...);
    ``objective`` is Σ c over the chosen supervisions and transfers (NaN unless optimal)."""
    status: str
    objective: float
    supervised: tuple[str, ...]
    transfers: dict[str, tuple[str, ...]]   # every non-supervised wanted task -> its sources
    choices: dict[str, Choice]              # every wanted task
    budget: float
    max_order: int
    objective_kind: str
    sqrt: bool
    cost: float

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    def mean(self, metric: str, transferred_only: bool = True) -> float:
        """Mean ``quality``/``gain``/``affinity`` of the chosen transfers (or of every wanted task,
        counting a supervised target with its ``self`` scores); NaN when there is none."""
        xs = [getattr(c, metric) for t, c in self.choices.items()
              if not transferred_only or t in self.transfers]
        xs = [x for x in xs if math.isfinite(x)]
        return float(np.mean(xs)) if xs else math.nan

    def to_dict(self) -> dict:
        """Plain JSON-ready data (NaN becomes None)."""
        nan_none = lambda x: None if x is None or not math.isfinite(x) else x  # noqa: E731
        return {
            "status": self.status, "objective": nan_none(self.objective), "objective_kind": self.objective_kind,
            "sqrt": self.sqrt, "budget": self.budget, "max_order": self.max_order, "cost": self.cost,
            "supervised": list(self.supervised),
            "transfers": {t: list(s) for t, s in self.transfers.items()},
            "per_target": {t: {"sources": list(c.sources), "affinity": nan_none(c.affinity),
                               "quality": nan_none(c.quality), "gain": nan_none(c.gain)}
                           for t, c in self.choices.items()},
            "mean_quality": nan_none(self.mean("quality")), "mean_gain": nan_none(self.mean("gain")),
        }

    def to_graph(self, roles: Roles | None = None):
        """A ``networkx.DiGraph``: one node per task (``role``, ``supervised``), one edge per
        (source, target) of a chosen transfer (``transfer`` key, ``order``, scores)."""
        import networkx as nx

        g = nx.DiGraph(budget=self.budget, max_order=self.max_order, objective=nan_or(self.objective),
                       status=self.status)
        for task in (roles.tasks if roles else list(self.choices) + list(self.supervised)):
            g.add_node(task, role=roles.role(task) if roles else "", supervised=task in self.supervised)
        for target, srcs in self.transfers.items():
            c = self.choices[target]
            for s in srcs:
                g.add_edge(s, target, transfer=transfer_key(srcs, target), order=len(srcs),
                           affinity=nan_or(c.affinity), quality=nan_or(c.quality), gain=nan_or(c.gain))
        return g


def solution_name(budget: float, max_order: int) -> str:
    """File stem of the taxonomy of one (budget, max order) cell of a sweep, e.g. ``b4_k2``."""
    return f"b{float(budget):g}_k{max_order}"


def read_solution(path: Path, section: str) -> dict:
    """A solution file of stage taxonomy, optimal, for the params ``section`` that chose its budget and order."""
    try:
        solution = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage taxonomy (dvc repro taxonomy)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable taxonomy solution ({err})") from None
    if solution.get("status") != "optimal":
        raise DataError(f"{path}: the taxonomy has no solution at {section}.budget / {section}.max_order "
                        f"(status {solution.get('status')!r}); choose another budget")
    return solution


def nan_or(x: float, default=None):
    """``x``, or ``default`` where x is NaN (JSON and GraphML have no NaN)."""
    return default if x is None or not math.isfinite(x) else float(x)


def decode(problem: TaxonomyProblem, x_edges: Sequence[float], x_supervise: Sequence[float],
           status: str) -> Taxonomy:
    """A :class:`Taxonomy` from 0/1 values of x_e (edge order) and x_s (supervisable order)."""
    supervised = tuple(s for s, v in zip(problem.supervisable, x_supervise) if v > 0.5)
    chosen = [e for e, v in zip(problem.edges, x_edges) if v > 0.5]
    choices, transfers = {}, {}
    for t in supervised:
        if t in problem.self_transfers:
            tr = problem.self_transfers[t]
            choices[t] = Choice((SELF,), tr.affinity, tr.quality, tr.gain)
    for e in chosen:
        tr = e.transfer
        transfers[tr.target] = tr.sources
        choices[tr.target] = Choice(tr.sources, tr.affinity, tr.quality, tr.gain)
    ok = status == "optimal"
    objective = (sum(e.value for e in chosen) + sum(problem.supervise_value[s] for s in supervised)) if ok else math.nan
    cost = (sum(problem.supervise_cost[s] for s in supervised) + sum(e.cost for e in chosen))
    order = {t: i for i, t in enumerate(problem.roles.tasks)}
    return Taxonomy(status=status, objective=objective, supervised=supervised,
                    transfers=dict(sorted(transfers.items(), key=lambda kv: order[kv[0]])),
                    choices=dict(sorted(choices.items(), key=lambda kv: order[kv[0]])),
                    budget=problem.budget, max_order=problem.max_order, objective_kind=problem.objective,
                    sqrt=problem.sqrt, cost=float(cost))


def cbc(threads: int | None = None, time_limit: float | None = None, fast: bool = True):
    """PuLP's bundled CBC, quiet and exact.

    - ``increment 1e-9``: by default CBC derives a "cutoff increment" from the objective and prunes
      nodes that cannot beat the incumbent by that much; on the published 16k data (budget 18, max
      order 4) that returned 5.938262 as optimal where 5.938268 exists (found by the HiGHS
      cross-check of benchmarks/taxonomy.py). A tiny increment keeps CBC exact.
    - ``fast`` turns off CBC's integer preprocessing, cut generation and primal heuristics. With the
      strong formulation the LP relaxation is (nearly) integral, so these find nothing that branch
      and bound on the LP does not; they were most of CBC's time (budget 18, max order 4: 170 ms
      -> 25 ms; budget 6, max order 5: 33 -> 12 ms). Branch and bound still proves optimality.

    (PuLP 3 deprecates the bundled ``PULP_CBC_CMD`` in favour of a separately installed CBC; the
    bundled one is what this project ships.)
    """
    import warnings

    import pulp

    options = ["increment 1e-9"] + (["preprocess off", "cuts off", "heuristics off"] if fast else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(msg=False, threads=threads, timeLimit=time_limit, options=options)


def _in(solver, folder: str):
    solver.tmpDir = folder
    return solver


def solve(problem: TaxonomyProblem, solver=None, model: LpModel | None = None,
          formulation: str = "strong") -> Taxonomy:
    """Solve the BIP with PuLP (bundled CBC unless ``solver`` is given).

    ``model`` reuses a model built by :func:`to_lp` (e.g. across a budget sweep, after
    :meth:`LpModel.set_budget`); it must come from a problem with the same edges.
    """
    import tempfile

    import pulp

    model = model or to_lp(problem, formulation=formulation)
    # CBC's model and solution files go to a private folder removed afterwards: PuLP deletes them
    # itself only when CBC exits normally.
    with tempfile.TemporaryDirectory(prefix="taskonomy-cbc-") as tmp:
        try:
            model.problem.solve(solver or _in(cbc(), tmp))
        except pulp.PulpSolverError:
            if solver is not None:
                raise
            # The bundled CBC 2.10.3 can crash (SIGSEGV) without preprocessing on some infeasible
            # problems (found by the random-instance tests); with its defaults it reports infeasible.
            model.problem.solve(_in(cbc(fast=False), tmp))
    status = pulp.LpStatus[model.problem.status].lower()
    if status == "optimal" and model.problem.sol_status != pulp.LpSolutionOptimal:
        status = pulp.LpSolution[model.problem.sol_status].lower()
    return decode(problem, [x.varValue or 0.0 for x in model.edge_vars],
                  [x.varValue or 0.0 for x in model.supervise_vars.values()], status)


def solve_highs(problem: TaxonomyProblem, arrays: MilpArrays | None = None,
                formulation: str = "strong") -> Taxonomy:
    """Solve the same BIP with ``scipy.optimize.milp`` (HiGHS): an independent cross-check.

    ``arrays`` reuses :func:`to_arrays` output across a budget sweep (the budget row's bound is
    taken from ``problem.budget``)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    arr = arrays or to_arrays(problem, formulation)
    hi = arr.hi.copy()
    hi[arr.budget_row] = problem.budget
    # exact: HiGHS stops at a 1e-4 relative gap by default
    res = milp(-arr.c, constraints=LinearConstraint(arr.a, arr.lo, hi),
               integrality=np.ones(arr.c.size), bounds=Bounds(0, 1), options={"mip_rel_gap": 0.0})
    status = {0: "optimal", 2: "infeasible"}.get(res.status, f"not solved ({res.message})")
    x = np.round(res.x) if res.x is not None else np.zeros(arr.c.size)
    n_e = len(problem.edges)
    return decode(problem, x[:n_e], x[n_e:], status)


def sweep(transfers: Sequence[Transfer], roles: Roles, budgets: Sequence[float], max_orders: Sequence[int],
          solver=None, formulation: str = "strong", **options) -> list[Taxonomy]:
    """Solve every (max order, budget) pair; one result per pair, max order outer, budget inner.

    Per max order the problem and its PuLP model are built once; across budgets only the
    right-hand side of (III) changes (:meth:`LpModel.set_budget`). ``options`` go to
    :func:`build_problem` (costs, values, objective, sqrt, ...).
    """
    if not budgets or not max_orders:
        return []
    results = []
    for k in max_orders:
        base = build_problem(transfers, roles, budget=max(budgets), max_order=k, **options)
        model = to_lp(base, name=f"taxonomy_k{k}", formulation=formulation)
        for b in budgets:
            problem = replace(base, budget=check_budget(b))
            model.set_budget(problem.budget)
            results.append(solve(problem, solver=solver, model=model))
    return results


def sweep_cells(results: Sequence[Taxonomy]) -> list[dict]:
    """The sweep as rows (max_order, budget, cell), a cell being the objective, mean gain and quality over
    the transferred targets, the numbers of supervised and transferred tasks, and the solver status."""
    return [{"max_order": r.max_order, "budget": r.budget, "objective": nan_or(r.objective),
             "gain": nan_or(r.mean("gain")), "quality": nan_or(r.mean("quality")), "supervised": len(r.supervised),
             "transferred": len(r.transfers), "status": r.status} for r in results]


def headline(results: Sequence[Taxonomy], stability: Mapping[tuple[int, float], Mapping] | None = None) -> dict:
    """The sweep's headline for ``dvc metrics`` (reports/metrics/taxonomy.json; the whole grid is
    grid.csv): at the largest max order, the objective and mean gain at the smallest, middle and
    largest budget, ``{"taxonomy": {"k<k>": {"b<b>": {objective, gain}}}}``; with ``stability``
    ((max order, budget) -> taskonomy.analysis.uncertainty.stability_of's dict), also the mean share of
    resamples keeping each chosen edge (``edge_stability``) and each supervised task (``supervised_stability``)."""
    if not results:
        return {"taxonomy": {}}
    k = max(r.max_order for r in results)
    top = sorted((r for r in results if r.max_order == k), key=lambda r: r.budget)
    picked = {id(r): r for r in (top[0], top[len(top) // 2], top[-1])}.values()

    def cell(r: Taxonomy) -> dict:
        out = {"objective": _rounded(r.objective), "gain": _rounded(r.mean("gain"))}
        kept = (stability or {}).get((r.max_order, r.budget))
        if kept is not None:
            for name, part in (("edge_stability", "edges"), ("supervised_stability", "supervised")):
                out[name] = _rounded(float(np.mean(list(kept[part].values())))) if kept[part] else None
        return out

    return {"taxonomy": {f"k{k}": {f"b{r.budget:g}": cell(r) for r in sorted(picked, key=lambda r: r.budget)}}}


def _rounded(x: float | None) -> float | None:
    x = nan_or(x)
    return None if x is None else round(float(x), 6)


LINKAGES = ("average", "complete", "single", "ward")


def similarity_tree(affinity: np.ndarray, method: str = "average") -> np.ndarray:
    """Task similarity tree: agglomerative clustering of the targets' first-order affinity columns.

    Taskonomy (Fig. 14, "task similarity tree"; results/README) clusters tasks by the columns of the
    normalized first-order affinity matrix: target t is described by how well every source transfers
    to it, ``P[:, t]`` (each column sums to 1). Distances are Euclidean; ``method`` is the linkage.

    Args:
        affinity: (sources, targets) first-order AHP affinities; rows with a NaN are left out.
    Returns:
        scipy's (targets - 1, 4) linkage matrix ``Z`` (``scipy.cluster.hierarchy.linkage``).
    """
    from scipy.cluster.hierarchy import linkage

    if method not in LINKAGES:
        raise TaxonomyError(f"linkage must be one of {', '.join(LINKAGES)}, got {method!r}")
    a = np.asarray(affinity, dtype=np.float64)
    a = a[np.all(np.isfinite(a), axis=1)]  # (sources with a value for every target, targets)
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] == 0:
        raise TaxonomyError(f"the similarity tree needs >= 2 targets with first-order affinities, got {a.shape}")
    return linkage(a.T, method=method, metric="euclidean")


def require_optimal(result: Taxonomy, problem: TaxonomyProblem) -> Taxonomy:
    """``result``, or a :class:`TaxonomyError` saying why there is no taxonomy."""
    if result.optimal:
        return result
    if result.status == "infeasible":
        cheapest = min(problem.supervise_cost.values(), default=math.inf)
        raise TaxonomyError(
            f"no taxonomy fits budget {problem.budget:g} with max order {problem.max_order}: every target must "
            f"be supervised or served by a transfer from supervised sources (cheapest supervision costs "
            f"{cheapest:g})")
    raise TaxonomyError(f"the solver did not find a taxonomy: {result.status}")
