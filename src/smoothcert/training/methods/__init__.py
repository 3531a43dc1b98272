"""The training methods, one module per per-batch objective: standard, gaussian, stn,
smoothadv, trades, wrm, nal. Each registers its class with
:func:`smoothcert.training.method.register` when imported
(:mod:`smoothcert.training.registry` imports them all)."""
