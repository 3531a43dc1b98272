"""The randomness of a training run: every random choice is drawn from a generator seeded by
(run seed, epoch, stream), so that it is a pure function of them and a resumed run repeats it.
"""

from __future__ import annotations

import numpy as np

#: The streams: data order, augmentation, evaluation noise, the methods' noise, validation noise.
#: (smoothcert.data.stream repeats STREAM_AUGMENT: the data layer may not import training.)
STREAM_ORDER, STREAM_AUGMENT, STREAM_EVAL, STREAM_METHOD, STREAM_VAL = 1, 2, 3, 4, 5


def derived_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed per (run seed, epoch, purpose): data order, augmentation, eval noise."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)
