"""Every seed smoothcert derives, in one place: each random choice is drawn from a generator
seeded by a pure function of the run's seed and of where the choice is made, so that a resumed,
reordered or sharded run repeats it exactly. Six schemes, each kept bit-identical to the seeds
recorded runs were made with:

============================  ==========================================  ===================
function                      entropy                                     used by
============================  ==========================================  ===================
:func:`derived_seed`          SeedSequence([seed, epoch, stream]), 63 b   training: data
                                                                          order, eval noise,
                                                                          the methods' noise
:func:`rank_seed`             SeedSequence([seed, epoch, batch, stream,   training under DDP
                              rank]), 63 bits                             (per rank, batch)
:func:`item_seed`             SeedSequence([seed, epoch, index,           streamed image
                              STREAM_AUGMENT]), 63 bits                   folders: per-item
                                                                          augmentation
:func:`example_generator`     SeedSequence([seed, idx, *stream]), two     certify, predict,
                              32-bit words -> a torch.Generator           attack runs: one
                                                                          generator per example
:func:`block_seed`            sha256("seed:first_index:γ:σ:stream"),      dcert runs: one
                              first 8 bytes little-endian >> 1            block of examples at
                                                                          one (γ, σ)
:func:`vote_generator`        SeedSequence((seed, idx, VOTE_STREAM)),     attacks with noise
                              two 32-bit words -> (a << 31 | b >> 1)      at test time: the
                                                                          votes of an example
============================  ==========================================  ===================

The training streams are the ``STREAM_*`` numbers below; a predict run's examples use
``stream=(PREDICT_STREAM, n)`` (smoothcert.runs.common), a certify run's none. SeedSequence
pads entropy shorter than four words with zeros, so a stream id 0 (with nothing after it)
would be no stream at all: see :func:`example_generator`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

#: The streams: data order, augmentation, evaluation noise, the methods' noise, validation noise.
STREAM_ORDER, STREAM_AUGMENT, STREAM_EVAL, STREAM_METHOD, STREAM_VAL = 1, 2, 3, 4, 5

_MASK_63 = (1 << 63) - 1


def _seed63(entropy: list[int]) -> int:
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return int(state) & _MASK_63


def derived_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed per (run seed, epoch, purpose): data order, augmentation, eval noise.

    Examples
    --------
    >>> derived_seed(0, 1, STREAM_ORDER) == derived_seed(0, 1, STREAM_ORDER)
    True
    >>> derived_seed(0, 1, STREAM_ORDER) != derived_seed(0, 1, STREAM_EVAL)
    True
    """
    return _seed63([seed, epoch, stream])


def rank_seed(seed: int, epoch: int, batch: int, stream: int, rank: int) -> int:
    """A 63-bit seed per (run seed, epoch, batch, purpose, rank)."""
    return _seed63([seed, epoch, batch, stream, rank])


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed per (run seed, epoch, example index): the augmentation of one item."""
    return _seed63([seed, epoch, index, STREAM_AUGMENT])


def example_generator(
    seed: int, idx: int, device: torch.device, stream: tuple[int, ...] = ()
) -> torch.Generator:
    """The generator of example ``idx``: independent streams for distinct (seed, idx, stream).
    Certify runs use no ``stream`` (their published noise stays as it was).

    Distinct as numpy sees them: SeedSequence pads entropy shorter than four 32-bit words with
    zeros, so a ``stream`` of zeros, e.g. ``(0,)``, is the empty stream, i.e. a certify run's
    noise; and it splits an integer of 2³² or more into 32-bit words, so (seed, idx, *stream)
    is compared word by word. A new stream id must therefore be nonzero and not end the key
    in zeros that a shorter key would be padded with."""
    state = np.random.SeedSequence([seed, idx, *stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def block_seed(seed: int, first_index: int, gamma: float, sigma: float, stream: str = "") -> int:
    """A seed for the draws of one block of examples at one (γ, σ): the same block gives the
    same draws whatever else is computed, so runs resume and γ grids refine reproducibly.
    ``stream`` separates independent uses (e.g. the certificate and the empirical adversary)."""
    key = f"{seed}:{first_index}:{float(gamma)!r}:{float(sigma)!r}:{stream}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


#: Tag mixed into the vote seeds, so that they never coincide with the attack's generators.
VOTE_STREAM = 0x766F7465  # "vote"


def vote_generator(seed: int, idx: int) -> torch.Generator:
    """The generator of example ``idx``'s noise votes in an attack run (CPU): seeded by
    (seed, idx) alone, so the votes are the same at every radius, attack and restart."""
    state = np.random.SeedSequence((int(seed), int(idx), VOTE_STREAM)).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
