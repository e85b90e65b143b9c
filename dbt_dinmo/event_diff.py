"""Which model rows are events never sent before, computed in DuckDB.

The model's rows (only the cursor window when the activation has a cursor) are streamed as Arrow
batches into a temporary table of the state database, normalised on the way in: the user's
identifier and the event identity as text, the event time as epoch microseconds (UTC), and a
reason for every row Braze would refuse that a set-based check can see (null identifier, null or
unparsable time, bad product, price, currency or quantity). One anti-join against the activation's
sent identities then yields the new events; only their values leave DuckDB, already ordered by
time, with the time rendered as ISO-8601 UTC.

Identity: the ``event_id`` column as text, or, without one, an MD5 of the event's identifying
fields (user, time, and the event name or the purchase's product, price, currency and quantity;
properties are left out so adding a property does not make every past event look new). Identical
rows then count as one event: give them an ``event_id`` to tell them apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.types as pat

from dbt_dinmo._duck import arrow_reader
from dbt_dinmo.activation import Activation
from dbt_dinmo.errors import DinmoError
from dbt_dinmo.project import ResolvedColumns
from dbt_dinmo.state import EventState, Watermark

SRC = "__esrc"
OUT = "__eout"
SAMPLE_LIMIT = 1000  # rejected rows kept per run
MAX_TEXT = 255
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def q(name: str) -> str:
    """A DuckDB-quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def cursor_kind(arrow_type: pa.DataType) -> str | None:
    """The watermark kind of a cursor column's Arrow type, or None when it cannot be a cursor."""
    if pat.is_dictionary(arrow_type):
        return cursor_kind(arrow_type.value_type)
    if pat.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pat.is_date(arrow_type):
        return "date"
    if pat.is_integer(arrow_type):
        return "integer"
    if pat.is_floating(arrow_type) or pat.is_decimal(arrow_type):
        return "number"
    return None


@dataclass(frozen=True)
class EventCounts:
    """What the event diff found."""

    source_rows: int  # rows read (the cursor window, or the whole model)
    already_sent: int  # rows whose identity was acknowledged before (or repeats a new row's)
    marked: int  # new rows recorded as sent without sending (backfill)
    rejected: int  # new rows refused before sending, with a reason
    to_send: int  # new rows that go to Braze (some may still be refused by property checks)


class EventDiff:
    """Loads an event model's rows and compares them with the sent identities."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        activation: Activation,
        columns: ResolvedColumns,
        state: EventState,
        *,
        state_exists: bool,
    ) -> None:
        assert activation.events is not None
        self.con = con
        self.a = activation
        self.spec = activation.events
        self.columns = columns
        self.state = state
        self.state_exists = state_exists
        self.cursor_kind: str | None = None
        self._reader: pa.RecordBatchReader | None = None

    # -- load ------------------------------------------------------------------------------
    def read_columns(self) -> list[str]:
        """The model columns to read, each once, in a stable order."""
        c = self.columns
        cols = [c.identifier, *c.roles.values(), *c.mapped]
        return list(dict.fromkeys(cols))

    def load(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Stream the rows into ``__esrc``; return how many were read."""
        created = False
        rows = 0
        stream = iter(batches)
        try:
            for batch in stream:
                self.con.register("__ebatch", batch)
                try:
                    if not created:
                        select = self._select(batch.schema)
                        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {SRC} AS {select}")
                        created = True
                    else:
                        self.con.execute(f"INSERT INTO {SRC} {select}")
                finally:
                    self.con.unregister("__ebatch")
                rows += batch.num_rows
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # frees the warehouse connection even when a batch was refused
        if not created:  # no batch at all: an empty table with neutral types
            schema = pa.schema([pa.field(c, pa.string()) for c in self.read_columns()])
            empty = pa.RecordBatch.from_pylist([], schema=schema)
            self.con.register("__ebatch", empty)
            try:
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {SRC} AS {self._select(schema)}")
            finally:
                self.con.unregister("__ebatch")
        return rows

    def _select(self, schema: pa.Schema) -> str:
        """The normalising SELECT over one registered batch (``__ebatch``)."""
        c, spec = self.columns, self.spec
        roles = c.roles
        time_col = roles["event_time"]
        time_type = schema.field(time_col).type
        if pat.is_dictionary(time_type):
            time_type = time_type.value_type
        t = q(time_col)
        if pat.is_timestamp(time_type):
            t_expr = f"epoch_us({t})"
        elif pat.is_date(time_type):
            t_expr = f"epoch_us(CAST({t} AS TIMESTAMP))"
        elif pat.is_string(time_type) or pat.is_large_string(time_type):
            t_expr = f"epoch_us(TRY_CAST({t} AS TIMESTAMPTZ))"
        else:
            raise DinmoError(
                f"{self.a.name}: event_time column {time_col} has type {time_type}; use a timestamp, "
                "a date or ISO-8601 text."
            )
        inner = [
            f"CAST({q(c.identifier)} AS VARCHAR) AS __uid",
            f"{t_expr} AS __t",
            f"CAST({t} AS VARCHAR) AS __traw",
        ]
        if "event_id" in roles:
            inner.append(f"CAST({q(roles['event_id'])} AS VARCHAR) AS __rid")
        if "cursor" in roles:
            kind = cursor_kind(schema.field(roles["cursor"]).type)
            if kind is None:
                raise DinmoError(
                    f"{self.a.name}: cursor column {roles['cursor']} has type "
                    f"{schema.field(roles['cursor']).type}; a cursor must be a timestamp, a date or a number."
                )
            self.cursor_kind = kind
            inner.append(f"{q(roles['cursor'])} AS __cur")
        inner += [f"{q(col)} AS v{i}" for i, col in enumerate(c.mapped)]
        if spec.is_purchase:
            inner += self._purchase_inner(schema)
        reason = self._reason_sql()
        eid = "__rid" if "event_id" in roles else self._row_hash_sql()
        return (
            f"SELECT * EXCLUDE (__traw{', __rid' if 'event_id' in roles else ''}), {eid} AS __eid, "
            f"{reason} AS __reason FROM (SELECT {', '.join(inner)} FROM __ebatch)"
        )

    def _purchase_inner(self, schema: pa.Schema) -> list[str]:
        roles, spec = self.columns.roles, self.spec
        price = q(roles["price"])
        price_type = schema.field(roles["price"]).type
        numeric = pat.is_integer(price_type) or pat.is_floating(price_type) or pat.is_decimal(price_type)
        textual = pat.is_string(price_type) or pat.is_large_string(price_type)
        if numeric:
            price_expr = f"CAST({price} AS DOUBLE)"
        elif textual:
            price_expr = f"TRY_CAST(trim({price}) AS DOUBLE)"
        else:
            price_expr = "CAST(NULL AS DOUBLE)"
        out = [
            f"CAST({q(roles['product_id'])} AS VARCHAR) AS __product",
            f"{price_expr} AS __price",
            f"CAST({price} AS VARCHAR) AS __price_raw",
        ]
        if "currency" in roles:
            out.append(f"CAST({q(roles['currency'])} AS VARCHAR) AS __currency")
        else:
            out.append(f"{lit(spec.currency_value or '')} AS __currency")
        if "quantity" in roles:
            qty = q(roles["quantity"])
            out.append(f"TRY_CAST({qty} AS DOUBLE) AS __qty_num")
            out.append(f"CAST({qty} AS VARCHAR) AS __qty_raw")
        else:
            out.append("CAST(NULL AS DOUBLE) AS __qty_num")
            out.append("CAST(NULL AS VARCHAR) AS __qty_raw")
        return out

    def _row_hash_sql(self) -> str:
        parts = ["__uid", "CAST(__t AS VARCHAR)"]
        if self.spec.is_purchase:
            parts += ["__product", "CAST(__price AS VARCHAR)", "upper(__currency)"]
            if "quantity" in self.columns.roles:
                parts.append("CAST(__qty_num AS VARCHAR)")
        else:
            parts.append(lit(self.spec.event_name or ""))
        joined = ", ".join(f"coalesce({p}, chr(0))" for p in parts)
        return f"md5(concat_ws(chr(31), {joined}))"

    def _reason_sql(self) -> str:
        roles = self.columns.roles
        ident, time_col = self.columns.identifier, roles["event_time"]
        cases = [
            f"WHEN __uid IS NULL THEN {lit(f'identifier column {ident} is null')}",
            f"WHEN __traw IS NULL THEN {lit(f'event_time column {time_col} is null')}",
            f"WHEN __t IS NULL THEN 'event_time column ' || {lit(time_col)} || ' holds ' || "
            f"{_quoted('__traw')} || ', which is not an ISO-8601 time'",
        ]
        if self.spec.is_purchase:
            product, price = roles["product_id"], roles["price"]
            cases += [
                f"WHEN __product IS NULL THEN {lit(f'product_id column {product} is null')}",
                f"WHEN length(__product) > {MAX_TEXT} THEN 'product_id is ' || length(__product) || "
                f"' characters long; Braze accepts at most {MAX_TEXT}'",
                f"WHEN __price_raw IS NULL THEN {lit(f'price column {price} is null')}",
                f"WHEN __price IS NULL THEN 'price ' || {_quoted('__price_raw')} || ' is not a number'",
                "WHEN isinf(__price) OR isnan(__price) THEN 'price ' || __price_raw || "
                "' is not a finite number'",
            ]
            if "currency" in roles:
                null_currency = f"currency column {roles['currency']} is null"
                cases.append(f"WHEN __currency IS NULL THEN {lit(null_currency)}")
            cases.append(
                "WHEN NOT regexp_full_match(__currency, '[A-Za-z]{3}') THEN 'currency ' || "
                f"{_quoted('__currency')} || ' is not a three-letter ISO 4217 code'"
            )
            if "quantity" in roles:
                cases.append(
                    "WHEN __qty_raw IS NOT NULL AND (__qty_num IS NULL OR __qty_num <> floor(__qty_num) "
                    "OR __qty_num < 1 OR __qty_num > 100) THEN 'quantity ' || "
                    f"{_quoted('__qty_raw')} || ' is not a whole number from 1 to 100'"
                )
        return "CASE " + " ".join(cases) + " ELSE NULL END"

    # -- compare ---------------------------------------------------------------------------
    def compute(self, *, mark_all: bool, before: dt.datetime | None) -> EventCounts:
        """Materialize the new rows in ``__eout`` (with ``__why`` and ``__mark``) and count.

        ``mark_all``: every new row with a usable identity is recorded as sent without sending
        (``backfill: false`` on the first run). ``before``: new rows whose time is earlier are
        recorded as sent without sending (``backfill: <date>``).
        """
        sent = self.state.table
        if self.state_exists:
            new = f"SELECT s.* FROM {SRC} AS s ANTI JOIN {sent} AS t ON t.__id = s.__eid"
        else:
            new = f"SELECT * FROM {SRC}"
        if "event_id" not in self.columns.roles:
            # Identical identifying fields are one event: keep one row of each.
            new = f"SELECT DISTINCT ON (__eid) * FROM ({new})"
        id_col = self.columns.roles.get("event_id", "")
        usable = "n.__eid IS NOT NULL AND d.n IS NULL"
        if mark_all:
            mark = usable
        elif before is not None:
            us = int((before - EPOCH) / dt.timedelta(microseconds=1))
            mark = f"{usable} AND n.__t IS NOT NULL AND n.__t < {us}"
        else:
            mark = "FALSE"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {OUT} AS WITH n AS MATERIALIZED ({new}), "
            "d AS (SELECT __eid, count(*) AS n FROM n WHERE __eid IS NOT NULL "
            "GROUP BY __eid HAVING count(*) > 1) "
            "SELECT n.*, CASE "
            f"WHEN n.__eid IS NULL THEN {lit(f'event_id column {id_col} is null')} "
            "WHEN d.n IS NOT NULL THEN 'event_id ' || n.__eid || ' appears ' || d.n || "
            "' times among the new rows; each event needs its own id' "
            f"ELSE n.__reason END AS __why, ({mark}) AS __mark "
            "FROM n LEFT JOIN d ON d.__eid = n.__eid"
        )
        source_rows = int(self.con.execute(f"SELECT count(*) FROM {SRC}").fetchall()[0][0])
        # Only the watermark reads the source rows again, and only their identity and cursor.
        keep = "__eid, __cur" if self.cursor_kind is not None else "__eid"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {SRC} AS SELECT {keep} FROM {SRC}")
        new_rows, marked, rejected, to_send = self.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE __mark), "
            "count(*) FILTER (WHERE NOT __mark AND __why IS NOT NULL), "
            f"count(*) FILTER (WHERE NOT __mark AND __why IS NULL) FROM {OUT}"
        ).fetchall()[0]
        return EventCounts(
            source_rows=source_rows,
            already_sent=source_rows - int(new_rows),
            marked=int(marked),
            rejected=int(rejected),
            to_send=int(to_send),
        )

    def rejections(self, limit: int = SAMPLE_LIMIT) -> list[tuple[str | None, str, str | None]]:
        """Rows refused before sending (a sample): (user identifier, reason, event identity)."""
        rows = self.con.execute(
            f"SELECT __uid, __why, __eid FROM {OUT} WHERE NOT __mark AND __why IS NOT NULL "
            f"ORDER BY __t NULLS FIRST, __eid NULLS FIRST LIMIT {int(limit)}"
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def journal_marks(self, journal: str) -> int:
        """Record the marked rows as sent (journal), in the caller's transaction; return how many."""
        now = dt.datetime.now(dt.timezone.utc)
        self.con.execute(
            f"INSERT INTO {journal} (__id, __seq, __at) SELECT __eid, 0, ? FROM {OUT} WHERE __mark", [now]
        )
        return int(self.con.execute(f"SELECT count(*) FROM {OUT} WHERE __mark").fetchall()[0][0])

    def rows(self, batch_rows: int = 20_000) -> Iterator[pa.RecordBatch]:
        """The events to send, oldest first: ``__uid, __eid, __time`` (ISO-8601 UTC), ``v0..vn``
        and, for purchases, ``__product, __price, __currency, __qty``."""
        cols = ["__uid", "__eid", f"{_iso_sql('__t')} AS __time"]
        cols += [f"v{i}" for i in range(len(self.columns.mapped))]
        if self.spec.is_purchase:
            cols += ["__product", "__price", "upper(__currency) AS __currency"]
            cols.append("CAST(__qty_num AS BIGINT) AS __qty")
        reader = arrow_reader(
            self.con.sql(
                f"SELECT {', '.join(cols)} FROM {OUT} WHERE __why IS NULL AND NOT __mark ORDER BY __t, __eid"
            ),
            batch_rows,
        )
        self._reader = reader
        try:
            yield from reader
        finally:
            self._close_reader()

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    # -- watermark -------------------------------------------------------------------------
    def watermark(self, column: str) -> Watermark | None:
        """Where the next window starts: the lowest cursor of the rows read that are not
        acknowledged (rejected, failed, or never sent), else the highest cursor read; None when no
        row read had a cursor. Call after the journal was folded into the sent table."""
        kind = self.cursor_kind
        if kind is None:
            return None
        temporal = kind in ("timestamp", "timestamptz")
        value = "CAST(epoch_us({}) AS VARCHAR)" if temporal else "CAST({} AS VARCHAR)"
        unresolved = "TRUE"
        if self.state_exists:
            sent = self.state.table
            unresolved = f"s.__eid IS NULL OR NOT EXISTS (SELECT 1 FROM {sent} AS t WHERE t.__id = s.__eid)"
        low = self.con.execute(
            f"SELECT {value.format('min(s.__cur)')} FROM {SRC} AS s "
            f"WHERE s.__cur IS NOT NULL AND ({unresolved})"
        ).fetchall()[0][0]
        if low is None:
            low = self.con.execute(f"SELECT {value.format('max(__cur)')} FROM {SRC}").fetchall()[0][0]
        return None if low is None else Watermark(column, kind, str(low))

    def close(self) -> None:
        """Drop the temporary tables."""
        self._close_reader()
        for table in (SRC, OUT):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")


def _quoted(column: str) -> str:
    """SQL for a value shown in a reason: quoted, and cut to 60 characters."""
    return f"'''' || left({column}, 60) || ''''"


def _iso_sql(us: str) -> str:
    """ISO-8601 UTC text of epoch microseconds, without fractional seconds when they are zero."""
    ts = f"make_timestamp({us})"
    return (
        f"CASE WHEN {us} % 1000000 = 0 THEN strftime({ts}, '%Y-%m-%dT%H:%M:%SZ') "
        f"ELSE strftime({ts}, '%Y-%m-%dT%H:%M:%S.%fZ') END"
    )
