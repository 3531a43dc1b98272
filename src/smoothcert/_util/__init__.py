"""Leaf helpers every layer may use: argument checks (:mod:`~smoothcert._util.checks`), atomic
file writes (:mod:`~smoothcert._util.atomic`), the torchrun place of this process
(:mod:`~smoothcert._util.launch`) and derived seeds (:mod:`~smoothcert._util.seeding`). Nothing
here imports any other part of smoothcert.
"""
