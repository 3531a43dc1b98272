"""Pointwise certification (Cohen et al.): the statistics (:mod:`~smoothcert.certify.stats`),
the smoothed classifier with PREDICT and CERTIFY (:mod:`~smoothcert.certify.smoothing`), its
noise models (:mod:`~smoothcert.certify.noise_models`: Gaussian or sound), the adaptive
sample-size plan (:mod:`~smoothcert.certify.adaptive`), the sound lattice noise
(:mod:`~smoothcert.certify.sound`) and the automatic batch size
(:mod:`~smoothcert.certify.tuning`).
"""
