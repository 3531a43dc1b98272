"""Properties of the derived seeds (hypothesis): a pure function of its arguments, 63 bits, and
different for neighbouring epochs and streams."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smoothcert._util.seeding import derived_seed

SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
SMALL = st.integers(min_value=0, max_value=10**6)


@given(SEEDS, SMALL, st.integers(min_value=1, max_value=5))
def test_derived_seed_is_a_pure_63_bit_function(seed: int, epoch: int, stream: int) -> None:
    value = derived_seed(seed, epoch, stream)
    assert 0 <= value < 2**63
    assert derived_seed(seed, epoch, stream) == value


@given(SEEDS, SMALL, st.integers(min_value=1, max_value=4))
def test_neighbouring_epochs_and_streams_get_different_seeds(
    seed: int, epoch: int, stream: int
) -> None:
    value = derived_seed(seed, epoch, stream)
    assert derived_seed(seed, epoch + 1, stream) != value
    assert derived_seed(seed, epoch, stream + 1) != value
