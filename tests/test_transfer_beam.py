"""The higher-order beam: which source sets each order gets, and which first-order rows rank."""
from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, strategies as st

from taskonomy.sources import set_key
from taskonomy.analysis.tables import read_affinity_rows
from taskonomy.transfer.beam import first_order_ranking, source_sets
from taskonomy.errors import DataError, TaskonomyError

RANK = [f"s{i}" for i in range(10)]


def test_taskonomy_counts_orders_2_to_6():
    sets = source_sets(RANK, max_order=6)
    by_order = {k: [s for s in sets if len(s) == k] for k in range(2, 7)}
    # Taskonomy's 16k pickles: 10 pairs, 10 triples, 15 quadruples, one set per order >= 5.
    assert [len(by_order[k]) for k in range(2, 7)] == [10, 10, 15, 1, 1]
    assert by_order[2] == list(itertools.combinations(RANK[:5], 2))
    assert by_order[3] == list(itertools.combinations(RANK[:5], 3))
    assert by_order[4] == list(itertools.combinations(RANK[:6], 4))
    assert by_order[5] == [tuple(RANK[:5])]
    assert by_order[6] == [tuple(RANK[:6])]


def test_default_max_order_3():
    sets = source_sets(RANK[:7], max_order=3)
    assert len(sets) == 20 and {len(s) for s in sets} == {2, 3}
    assert ("s0", "s1") == sets[0] and ("s2", "s3", "s4") == sets[-1]
    assert all("s5" not in s and "s6" not in s for s in sets)


def test_small_beam_falls_back_to_prefix():
    assert source_sets(RANK, max_order=3, beam=2) == [("s0", "s1"), ("s0", "s1", "s2")]


def test_order_larger_than_sources_is_an_error():
    with pytest.raises(TaskonomyError, match="order 4 requested but only 3 sources"):
        source_sets(["a", "b", "c"], max_order=4)


@given(n=st.integers(2, 9), max_order=st.integers(2, 9), beam=st.integers(2, 7), beam4=st.integers(4, 8))
def test_sets_are_ranked_distinct_and_within_pool(n, max_order, beam, beam4):
    ranking = RANK[:n]
    if max_order > n:
        with pytest.raises(TaskonomyError):
            source_sets(ranking, max_order, beam, beam4)
        return
    sets = source_sets(ranking, max_order, beam, beam4)
    assert len(sets) == len(set(sets))
    for s in sets:
        k = len(s)
        pool = max(beam if k <= 3 else beam4 if k == 4 else k, k)
        assert list(s) == sorted(s, key=ranking.index)  # rank order inside a set
        assert all(ranking.index(x) < pool for x in s)
    for k in range(2, max_order + 1):
        pool = min(max(beam if k <= 3 else beam4 if k == 4 else k, k), n)
        assert sum(len(s) == k for s in sets) == math.comb(pool, k)


def test_first_order_ranking_excludes_self_random_target():
    rows = [dict(target="t", sources=s, order=o, affinity=a) for s, o, a in [
        ("a", "1", "0.1"), ("b", "1", "0.3"), ("self", "1", "0.9"), ("random", "1", "0.5"),
        ("t", "1", "0.4"), ("c", "1", "0.3"), ("a__b", "2", "0.9")]]
    rows.append(dict(target="u", sources="z", order="1", affinity="0.99"))
    assert first_order_ranking(rows, "t") == ["b", "c", "a"]  # tie b/c broken by name
    assert set_key(["b", "c"]) == "b__c"


def test_affinity_table_missing_is_one_line(tmp_path):
    with pytest.raises(DataError, match="written by stage affinity_first"):
        read_affinity_rows(tmp_path / "affinities.csv")
    (tmp_path / "a.csv").write_text("target,sources,order,affinity\nt,a,1,0.5\n")
    assert read_affinity_rows(tmp_path / "a.csv") == [dict(target="t", sources="a", order="1", affinity="0.5")]


def test_first_order_matrix_layout(tmp_path):
    (tmp_path / "m.csv").write_text(",t,u\na,0.2,0.7\nb,0.5,\nt,0.9,0.1\n")
    rows = read_affinity_rows(tmp_path / "m.csv")
    assert first_order_ranking(rows, "t") == ["b", "a"]
    assert first_order_ranking(rows, "u") == ["a", "t"]
