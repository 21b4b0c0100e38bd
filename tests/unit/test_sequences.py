"""The stream's sequence table, without Triton: bounded, least recently used evicted first,
and every refusal says what to send."""

import numpy as np
import pytest

from maas.runtime.sequences import SequenceRefused, SequenceTable


def test_a_full_table_evicts_the_least_recently_used_and_admits_the_new_one():
    table = SequenceTable(length=3, capacity=2, idle_seconds=60)
    table.observe("a", 1.0, start=True, end=False, now=0)
    table.observe(2, 2.0, start=True, end=False, now=1)
    table.observe("a", 3.0, start=False, end=False, now=2)  # "a" is now the more recent
    assert list(table.observe("c", 4.0, start=True, end=False, now=3)) == [4.0]
    assert len(table) == 2
    with pytest.raises(SequenceRefused, match=r"sequence 2 was evicted.*START again") as e:
        table.observe(2, 5.0, start=False, end=False, now=4)
    assert e.value.reason == "evicted"
    assert list(table.observe("a", 6.0, start=False, end=False, now=5)) == [1.0, 3.0, 6.0]
    # START again: admitted (evicting "c", now the least recent), counted afresh.
    assert list(table.observe(2, 7.0, start=True, end=False, now=6)) == [7.0]
    with pytest.raises(SequenceRefused, match="sequence c was evicted"):
        table.observe("c", 8.0, start=False, end=False, now=7)


def test_a_window_keeps_its_last_values_and_end_frees_it():
    table = SequenceTable(length=3, capacity=4, idle_seconds=60)
    for i, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        values = table.observe(9, value, start=i == 0, end=False, now=i)
    np.testing.assert_array_equal(values, [2.0, 3.0, 4.0])
    values[0] = 99.0  # a copy: the caller cannot change the state
    assert list(table.observe(9, 5.0, start=False, end=True, now=5)) == [3.0, 4.0, 5.0]
    with pytest.raises(SequenceRefused, match=r"holds nothing here.*START") as e:
        table.observe(9, 6.0, start=False, end=False, now=6)
    assert e.value.reason == "no_sequence"


def test_silent_sequences_are_freed_and_the_rest_kept():
    table = SequenceTable(length=3, capacity=4, idle_seconds=10)
    table.observe(1, 1.0, start=True, end=False, now=0)
    table.observe(2, 1.0, start=True, end=False, now=5)
    table.sweep(now=12)
    assert list(table.held) == [("", 2)]  # (owner, ID): no tenant here
    with pytest.raises(SequenceRefused, match="silent over 10 s"):
        table.observe(1, 1.0, start=False, end=False, now=12)


@pytest.mark.parametrize("missing", [0, ""])
def test_a_request_without_a_sequence_id_is_refused_naming_it(missing):
    table = SequenceTable(length=3, capacity=4, idle_seconds=10)
    with pytest.raises(SequenceRefused, match="no sequence ID: send sequence_id"):
        table.observe(missing, 1.0, start=True, end=False, now=0)
    assert len(table) == 0


def test_a_one_request_sequence_is_answered_without_evicting_anyone():
    """The health probes send START and END at once: a full table keeps its sequences."""
    table = SequenceTable(length=3, capacity=2, idle_seconds=60)
    table.observe("a", 1.0, start=True, end=False, now=0)
    table.observe("b", 2.0, start=True, end=False, now=1)
    assert list(table.observe("probe", 5.0, start=True, end=True, now=2)) == [5.0]
    assert list(table.held) == [("", "a"), ("", "b")] and not table.evicted
    assert list(table.observe("a", 3.0, start=False, end=False, now=3)) == [1.0, 3.0]


def test_owners_keep_their_own_sequences_and_the_heaviest_is_evicted_first():
    """The same ID from two tenants is two sequences; a tenant that fills the table evicts its
    own least recently used sequence, not another tenant's older one."""
    table = SequenceTable(length=3, capacity=3, idle_seconds=60)
    table.observe(7, 1.0, start=True, end=False, now=0, owner="alice")
    table.observe(7, 9.0, start=True, end=False, now=1, owner="mallory")
    assert list(table.observe(7, 2.0, start=False, end=False, now=2, owner="alice")) == [1.0, 2.0]
    with pytest.raises(SequenceRefused, match="sequence 8 holds nothing"):
        table.observe(8, 0.0, start=False, end=False, now=3, owner="mallory")
    table.observe(8, 9.0, start=True, end=False, now=4, owner="mallory")
    table.observe(9, 9.0, start=True, end=False, now=5, owner="mallory")  # full: mallory's 7 goes
    assert list(table.observe(7, 3.0, start=False, end=True, now=6, owner="alice")) == [1, 2, 3]
    with pytest.raises(SequenceRefused, match="sequence 7 was evicted"):
        table.observe(7, 9.0, start=False, end=False, now=7, owner="mallory")


def test_among_equals_the_least_recently_used_goes_and_the_starter_counts_its_new_one():
    table = SequenceTable(length=3, capacity=2, idle_seconds=60)
    table.observe("a", 1.0, start=True, end=False, now=0, owner="alice")
    table.observe("m1", 1.0, start=True, end=False, now=1, owner="mallory")
    table.observe("m2", 1.0, start=True, end=False, now=2, owner="mallory")  # evicts m1, not a
    assert list(table.held) == [("alice", "a"), ("mallory", "m2")]
    table.observe("a", 2.0, start=False, end=False, now=3, owner="alice")  # m2 is now the LRU
    # Owners of one sequence each (a client naming a new owner per sequence): plain LRU.
    table.observe("x", 1.0, start=True, end=False, now=4, owner="x")
    assert list(table.held) == [("alice", "a"), ("x", "x")]
