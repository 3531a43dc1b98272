"""Properties of sharding (hypothesis): the shards of a selection partition it, in order, and
their sizes differ by at most one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smoothcert.runs.shards import shard_of, shard_path


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), unique=True, max_size=300),
    st.integers(min_value=1, max_value=16),
)
def test_shards_partition_the_selection(indices: list[int], world: int) -> None:
    shards = [shard_of(indices, rank, world) for rank in range(world)]
    assert sorted(i for s in shards for i in s) == sorted(indices)
    for s in shards:
        assert s == [i for i in indices if i in set(s)]  # each keeps the selection's order
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(min_value=2, max_value=64), st.data())
def test_shard_files_have_distinct_names(world: int, data: st.DataObject) -> None:
    names = {shard_path("r.db", rank, world).name for rank in range(world)}
    assert len(names) == world
    rank = data.draw(st.integers(min_value=0, max_value=world - 1))
    assert shard_path("r.db", rank, world).name == f"r.shard{rank}-of-{world}.db"
