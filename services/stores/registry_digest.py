"""MLflow's digest of a pandas dataset, recomputed on rows read back from the warehouse.

``mlflow.data.from_pandas`` fingerprints a DataFrame with ``compute_pandas_digest``: the first 10,000
rows (string and number columns), hashed with ``pd.util.hash_pandas_object`` (index included), plus the
row count and the column names. The hash depends on row order and on each column's dtype, so the rows
must come back in the logged order and be cast to the dtypes the logged schema records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest

DIGEST_ROWS = MAX_ROWS  # rows the digest reads (the rest count only through the row count)
# MLflow schema type -> the numpy dtype pandas gave the logged column (no missing values).
_DTYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32, "boolean": np.bool_}


class DigestNotComputable(Exception):
    """The rows cannot be put back into the logged DataFrame's exact shape; the message says why."""


def _typed(frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> pd.DataFrame:
    out = {}
    for name, kind in columns:
        values = frame[name]
        if kind == "string":
            if values.isna().any():
                raise DigestNotComputable(f"string column {name} has missing values")
            out[name] = values.astype(object).map(str)
        elif kind in _DTYPES:
            if values.isna().any():
                raise DigestNotComputable(f"column {name} ({kind}) has missing values, whose logged dtype is unknown")
            out[name] = values.to_numpy().astype(_DTYPES[kind])
        else:
            raise DigestNotComputable(f"column {name} has type {kind}, which the tower cannot rebuild")
    return pd.DataFrame(out, columns=[name for name, _ in columns])


def pandas_digest(head: pd.DataFrame, columns: Sequence[tuple[str, str]], total_rows: int) -> str:
    """MLflow's digest of a DataFrame of ``columns`` whose first rows are ``head`` and that held ``total_rows``.

    ``compute_pandas_digest`` step by step, with the row count given instead of read from a whole frame:
    the hash reads only the first ``DIGEST_ROWS`` rows; a column counts as text when every value is a
    str, which the logged schema's ``string`` type says (so the rows past the head need not be read).
    """
    typed = _typed(head.head(DIGEST_ROWS), columns).reset_index(drop=True)
    strings = pd.Index([name for name, kind in columns if kind == "string"])
    numbers = typed.select_dtypes(include=[np.number]).columns
    kept = typed[strings.union(numbers)]  # Index.union sorts, as MLflow's does
    return str(get_normalized_md5_digest([pd.util.hash_pandas_object(kept).values, np.int64(total_rows)]
                                         + [str(name).encode() for name, _ in columns]))
