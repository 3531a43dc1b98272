"""The runs layer: resumable runs over a dataset, one committed row per example in a run file
(smoothcert.runs.store), so that an interrupted run resumes with no duplicate and no gap.

- certify.py: CERTIFY / PREDICT runs (fixed-n or adaptive) and export to Cohen et al.'s TSV;
- attack.py: accuracy under L2 PGD at every radius (the NAL paper's Table 2 protocol);
- dcert.py: the NAL certificate curve and the empirical worst-case loss per example.
"""

from smoothcert._util.hashing import file_sha256
from smoothcert._util.seeding import example_generator
from smoothcert.runs.attack import ATTACK_SCHEMA, attack_dataset
from smoothcert.runs.certify import (
    CERTIFY_SCHEMA,
    PREDICT_SCHEMA,
    CertifyOptions,
    PredictOptions,
    Selection,
    certify_dataset,
    predict_dataset,
)
from smoothcert.runs.common import model_fingerprint, select_indices
from smoothcert.runs.dcert import dcert_dataset
from smoothcert.runs.dcert_file import DcertResult, dcert_schema, read_dcert
from smoothcert.runs.store import RunStore
from smoothcert.runs.tsv import export_tsv

__all__ = [
    "ATTACK_SCHEMA",
    "CERTIFY_SCHEMA",
    "PREDICT_SCHEMA",
    "CertifyOptions",
    "DcertResult",
    "PredictOptions",
    "RunStore",
    "attack_dataset",
    "certify_dataset",
    "dcert_dataset",
    "dcert_schema",
    "example_generator",
    "export_tsv",
    "file_sha256",
    "model_fingerprint",
    "predict_dataset",
    "read_dcert",
    "select_indices",
    "Selection",
]
