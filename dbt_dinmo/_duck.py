"""Small compatibility layer over DuckDB's Arrow API (renamed in duckdb 2.0)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def arrow_reader(result: Any, batch_rows: int) -> pa.RecordBatchReader:
    """A record batch reader over a DuckDB result (``to_arrow_reader`` or the 1.x name)."""
    for name in ("to_arrow_reader", "fetch_arrow_reader", "fetch_record_batch"):
        if hasattr(result, name):
            return getattr(result, name)(batch_rows)
    raise TypeError(f"cannot stream Arrow batches from {type(result).__name__}")


def arrow_table(result: Any) -> pa.Table:
    """A whole DuckDB result as an Arrow table."""
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        if hasattr(result, name):
            return getattr(result, name)()
    raise TypeError(f"cannot read an Arrow table from {type(result).__name__}")
