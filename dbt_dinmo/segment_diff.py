"""Who entered and who left a segment since the last acknowledged sync, computed in DuckDB.

The warehouse groups the model by identifier (``select id, count(*) ... group by id``), so only
distinct members travel; they are streamed as Arrow batches into a temporary table of the state
database. Two anti-joins against the activation's state (the members Braze acknowledged) then
give the entries and the exits. A member listed twice is one member; a null identifier is
reported as a rejected row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from dbt_dinmo.state import ActivationState

if TYPE_CHECKING:
    import duckdb

MEMBERS = "__members"
ENTRIES = "__entries"
EXITS = "__exits"


@dataclass(frozen=True)
class SegmentCounts:
    """What the segment diff found."""

    source_rows: int  # model rows
    members: int  # distinct non-null identifiers
    null_rows: int  # rows with a null identifier
    entries: int  # members not in the state (every member with --full-refresh)
    exits: int  # users in the state who are no longer members
    synced: int  # users in the state before this run


def segment_sql(relation_name: str, quoted_identifier: str) -> str:
    """The query sent to the warehouse: one row per distinct identifier, with its row count."""
    return (
        f"select {quoted_identifier} as dinmo_member_id, count(*) as dinmo_rows "
        f"from {relation_name} group by {quoted_identifier}"
    )


class SegmentDiff:
    """Loads a segment's members and compares them with one activation's state."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        state: ActivationState,
        *,
        state_exists: bool,
        full_refresh: bool = False,
    ) -> None:
        self.con = con
        self.state = state
        self.state_exists = state_exists
        self.full_refresh = full_refresh

    def load(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Stream the grouped members into ``__members(__id, __n)``."""
        select = (
            "SELECT CAST(dinmo_member_id AS VARCHAR) AS __id, CAST(dinmo_rows AS BIGINT) AS __n FROM __batch"
        )
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {MEMBERS} (__id VARCHAR, __n BIGINT)")
        for batch in batches:
            if not batch.num_rows:
                continue
            self.con.register("__batch", batch)
            try:
                self.con.execute(f"INSERT INTO {MEMBERS} {select}")
            finally:
                self.con.unregister("__batch")

    def compute(self) -> SegmentCounts:
        """Materialize ``__entries`` and ``__exits``; count everything."""
        members = f"SELECT DISTINCT __id FROM {MEMBERS} WHERE __id IS NOT NULL"
        if self.state_exists and not self.full_refresh:
            entries = (
                f"SELECT m.__id FROM ({members}) AS m ANTI JOIN {self.state.table} AS t ON t.__id = m.__id"
            )
        else:
            entries = members
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {ENTRIES} AS {entries}")
        if self.state_exists:
            exits = (
                f"SELECT t.__id FROM {self.state.table} AS t ANTI JOIN ({members}) AS m ON m.__id = t.__id"
            )
        else:
            exits = "SELECT NULL::VARCHAR AS __id LIMIT 0"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {EXITS} AS {exits}")
        rows, distinct, nulls = self.con.execute(
            "SELECT coalesce(sum(__n), 0), count(DISTINCT __id), "
            f"coalesce(sum(__n) FILTER (WHERE __id IS NULL), 0) FROM {MEMBERS}"
        ).fetchall()[0]
        synced = (
            int(self.con.execute(f"SELECT count(*) FROM {self.state.table}").fetchall()[0][0])
            if self.state_exists
            else 0
        )
        return SegmentCounts(
            source_rows=int(rows),
            members=int(distinct),
            null_rows=int(nulls),
            entries=self.count(ENTRIES),
            exits=self.count(EXITS),
            synced=synced,
        )

    def count(self, table: str) -> int:
        """Rows in ``__entries`` or ``__exits``."""
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def exclude_entries(self, table: str) -> None:
        """Drop the entries listed in ``table`` (users waiting for a Braze profile)."""
        self.con.execute(f"DELETE FROM {ENTRIES} WHERE __id IN (SELECT __id FROM {table})")

    def drop_exits(self) -> None:
        """Send no exits this run (the exit guard blocked them)."""
        self.con.execute(f"DELETE FROM {EXITS}")

    def ids(self, table: str, chunk: int) -> Iterator[list[str]]:
        """The identifiers of ``__entries`` or ``__exits``, sorted, in lists of ``chunk``."""
        result = self.con.execute(f"SELECT __id FROM {table} ORDER BY __id")
        while True:
            rows = result.fetchmany(chunk)
            if not rows:
                return
            yield [r[0] for r in rows]

    def sample(self, table: str, limit: int) -> list[str]:
        """The first identifiers of ``__entries`` or ``__exits``."""
        rows = self.con.execute(f"SELECT __id FROM {table} ORDER BY __id LIMIT {int(limit)}").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Drop the temporary tables."""
        for table in (MEMBERS, ENTRIES, EXITS):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
