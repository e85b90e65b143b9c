"""Field-level diff of a model against the acknowledged state, computed in DuckDB.

The model's rows are streamed as Arrow batches into a temporary table of the state database
(DuckDB spills to disk past its memory limit, so memory stays bounded). One join against the
state table then yields, per identifier, which attributes changed: only their values leave
DuckDB. Null and duplicated identifiers are set aside as rejected rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from dbt_dinmo._duck import arrow_reader, arrow_table
from dbt_dinmo.state import ActivationState, StateStore, attribute_column

if TYPE_CHECKING:
    import duckdb

SRC = "__src"
CHANGES = "__changes"
DUPS = "__dups"
SAMPLE_LIMIT = 1000  # rejected identifiers kept per reason and run


@dataclass(frozen=True)
class DiffCounts:
    """What the diff found."""

    source_rows: int
    valid_rows: int
    inserted: int  # changed rows whose identifier is not in the state yet
    updated: int  # changed rows already in the state
    unchanged: int
    null_identifiers: int
    duplicate_rows: int
    deletes: int  # identifiers in the state that left the model
    synced: int  # identifiers in the state before this run


class Diff:
    """Loads a model's rows and compares them with one activation's state."""

    def __init__(
        self,
        store: StateStore,
        state: ActivationState,
        *,
        full_refresh: bool = False,
        con: duckdb.DuckDBPyConnection | None = None,
    ):
        self.store = store
        # Temporary tables and the streamed changes live on this connection (default: the
        # store's own); a separate cursor lets several diffs stay open at once.
        self.con = con if con is not None else store.con
        self.state = state
        self.full_refresh = full_refresh
        self.attr_cols = [attribute_column(a) for a in state.attributes]
        # A state about to be reset (new destination or identifier) counts as no state at all.
        self._state_cols = set() if state.reset_reason else store.table_columns(state.table)
        self._state_exists = bool(self._state_cols)
        self._reader: pa.RecordBatchReader | None = None

    # -- load ------------------------------------------------------------------------------
    def load(self, batches: Iterable[pa.RecordBatch], id_column: str, columns: list[str]) -> int:
        """Stream the model into ``__src(__id, v0..vn)``; return the number of rows."""
        values = ", ".join(f'"{c}" AS v{i}' for i, c in enumerate(columns))
        select = f'SELECT CAST("{id_column}" AS VARCHAR) AS __id, {values} FROM __batch'
        created = False
        rows = 0
        for batch in batches:
            self.con.register("__batch", batch)
            try:
                if not created:
                    self.con.execute(f"CREATE OR REPLACE TEMP TABLE {SRC} AS {select}")
                    created = True
                else:
                    self.con.execute(f"INSERT INTO {SRC} {select}")
            finally:
                self.con.unregister("__batch")
            rows += batch.num_rows
        if not created:  # an empty model: no batch, so no types; nothing to compare anyway
            cols = ", ".join(f"NULL::VARCHAR AS v{i}" for i in range(len(columns)))
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {SRC} AS SELECT NULL::VARCHAR AS __id, {cols} LIMIT 0"
            )
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {DUPS} AS SELECT __id, count(*) AS n FROM {SRC} "
            "WHERE __id IS NOT NULL GROUP BY __id HAVING count(*) > 1"
        )
        return rows

    # -- compare ---------------------------------------------------------------------------
    def compute(self) -> DiffCounts:
        """Materialize the changed rows in ``__changes`` and count everything."""
        n = len(self.attr_cols)
        if self._state_exists:
            old = ", ".join(
                f"t.{c} AS o{i}" if c in self._state_cols else f"NULL::UBIGINT AS o{i}"
                for i, c in enumerate(self.attr_cols)
            )
            join = f"LEFT JOIN {self.state.table} AS t ON t.__id = s.__id"
            new = "t.__id IS NULL"
        else:
            old = ", ".join(f"NULL::UBIGINT AS o{i}" for i in range(n))
            join, new = "", "TRUE"
        vals = ", ".join(f"s.v{i}, hash(s.v{i}) AS h{i}" for i in range(n))
        if self.full_refresh:
            flags = ", ".join(f"TRUE AS c{i}" for i in range(n))
        else:
            flags = ", ".join(
                f"(o{i} IS DISTINCT FROM h{i} AND NOT (o{i} IS NULL AND v{i} IS NULL)) AS c{i}"
                for i in range(n)
            )
        any_change = " OR ".join(f"c{i}" for i in range(n))
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {CHANGES} AS "
            f"SELECT * FROM (SELECT *, {flags} FROM ("
            f"  SELECT s.__id, {new} AS __new, {vals}, {old} FROM {SRC} AS s {join}"
            f"  WHERE s.__id IS NOT NULL AND s.__id NOT IN (SELECT __id FROM {DUPS})"
            f")) WHERE {any_change}"
        )
        source_rows, null_ids = self.con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE __id IS NULL) FROM {SRC}"
        ).fetchall()[0]
        dup_rows = self.con.execute(f"SELECT coalesce(sum(n), 0) FROM {DUPS}").fetchall()[0][0]
        inserted, updated = self.con.execute(
            f"SELECT count(*) FILTER (WHERE __new), count(*) FILTER (WHERE NOT __new) FROM {CHANGES}"
        ).fetchall()[0]
        valid = int(source_rows) - int(null_ids) - int(dup_rows)
        synced = self.store.synced_count(self.state) if self._state_exists else 0
        return DiffCounts(
            source_rows=int(source_rows),
            valid_rows=valid,
            inserted=int(inserted),
            updated=int(updated),
            unchanged=valid - int(inserted) - int(updated),
            null_identifiers=int(null_ids),
            duplicate_rows=int(dup_rows),
            deletes=self._delete_count(),
            synced=synced,
        )

    def exclude(self, table: str) -> int:
        """Drop the changed rows of the identifiers in ``table`` (users waiting for a Braze
        profile); return how many changed rows are left."""
        self.con.execute(f"DELETE FROM {CHANGES} WHERE __id IN (SELECT __id FROM {table})")
        return int(self.con.execute(f"SELECT count(*) FROM {CHANGES}").fetchall()[0][0])

    def changes(self, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Changed rows: ``__id, __new, v_i, h_i, c_i`` (stable order: by identifier)."""
        reader = arrow_reader(self.con.sql(f"SELECT * FROM {CHANGES} ORDER BY __id"), batch_rows)
        self._reader = reader
        try:
            yield from reader
        finally:
            self._close_reader()

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    # -- deletes ---------------------------------------------------------------------------
    def _delete_count(self) -> int:
        if not self._state_exists:
            return 0
        return int(
            self.con.execute(
                f"SELECT count(*) FROM {self.state.table} AS t ANTI JOIN {SRC} AS s ON s.__id = t.__id"
            ).fetchall()[0][0]
        )

    def deletes(self, limit: int | None = None) -> list[str]:
        """Identifiers in the state that are no longer in the model (sorted)."""
        if not self._state_exists:
            return []
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self.con.execute(
            f"SELECT t.__id FROM {self.state.table} AS t ANTI JOIN {SRC} AS s ON s.__id = t.__id "
            f"ORDER BY t.__id{lim}"
        ).fetchall()
        return [r[0] for r in rows]

    # -- rejected identifiers --------------------------------------------------------------
    def identifier_rejections(self, id_column: str) -> pa.Table:
        """Rows rejected for a null or duplicated identifier (sampled), as a rejection table."""
        return arrow_table(
            self.con.sql(
                f"(SELECT NULL::VARCHAR AS identifier, "
                f"'identifier column {id_column} is null' AS reason, 'dinmo' AS origin, "
                f"NULL::VARCHAR AS detail FROM {SRC} WHERE __id IS NULL LIMIT {SAMPLE_LIMIT}) "
                f"UNION ALL "
                f"(SELECT __id, 'identifier appears ' || n || ' times in the model; each user needs "
                f"exactly one row', 'dinmo', NULL FROM {DUPS} ORDER BY __id LIMIT {SAMPLE_LIMIT})"
            )
        )

    def close(self) -> None:
        """Drop the temporary tables."""
        self._close_reader()
        for table in (SRC, CHANGES, DUPS):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
