"""Query the user's warehouse through their own dbt profile/target adapter.

``open_warehouse()`` opens the adapter exactly as ``dbt build`` would (same profile, target,
credentials, ``env_var()`` values, DuckDB attachments and extensions) and keeps one named
connection (``dbt-dinmo``) open until ``close()``. Rows leave the warehouse as Arrow record
batches on that connection, never through ``adapter.execute(fetch=True)``.

dbt and pyarrow are imported lazily, inside functions: importing this module imports neither.

Threading: dbt keys connections by thread. Open the warehouse, call ``columns()`` and consume
``stream()`` on the same thread (the main thread); other threads get a ``WarehouseError``.
Only one stream may be active at a time, and ``columns()`` may not run while one is; consume
each stream fully (or call its ``close()``) first. ``close()`` closes any unfinished stream.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import threading
import uuid
import weakref
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dbt_dinmo.errors import DinmoError, WarehouseError

if TYPE_CHECKING:
    import pyarrow as pa

    from dbt_dinmo._dbt_adapter import AdapterSession

__all__ = ["Column", "Warehouse", "open_warehouse"]

CONNECTION_NAME = "dbt-dinmo"

_LOCK_MARKERS = ("could not set lock", "conflicting lock")


@dataclass(frozen=True)
class Column:
    """A column as the warehouse reports it (real name and the adapter's type string)."""

    name: str
    data_type: str


def _close_duckdb_environment(adapter: Any) -> None:
    """Close dbt-duckdb's process-wide DuckDB instance so the file lock is released.

    dbt-duckdb keeps its database open for the life of the process (``keep_open`` defaults to
    true); a long-running tool must let go of the file once it is done with it.
    """
    manager = type(adapter.connections)
    lock = getattr(manager, "_LOCK", None) or contextlib.nullcontext()
    with lock:
        env = getattr(manager, "_ENV", None)
        if env is None or getattr(env, "handle_count", 0) > 0:
            return
        env.close()
        manager._ENV = None


def _type_name(col: Any) -> str:
    """The adapter's type string, without dbt's invented ``character varying(256)``."""
    with contextlib.suppress(Exception):
        if col.is_string() and getattr(col, "char_size", None) is None:
            return str(col.dtype)
    return str(col.data_type)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


class Warehouse:
    """An open dbt adapter plus one named connection; use as a context manager.

    Attributes: ``adapter_type`` ("duckdb", "postgres", ...), ``target_name``,
    ``profile_name`` and ``database`` (the target's database, to compare with the database of
    a manifest's relation).
    """

    adapter_type: str
    target_name: str
    profile_name: str
    database: str | None

    def __init__(self, session: AdapterSession) -> None:
        self._session = session
        self._adapter: Any = session.adapter
        config = session.config
        self.adapter_type = str(config.credentials.type)
        self.target_name = str(config.target_name)
        self.profile_name = str(config.profile_name)
        database = getattr(config.credentials, "database", None)
        self.database = str(database) if database else None
        self._thread = threading.get_ident()
        self._closed = False
        self._busy = False
        # Weak references: a stream the caller drops is finalised (reader closed) by the GC.
        self._streams: weakref.WeakValueDictionary[object, Generator[pa.RecordBatch, None, None]]
        self._streams = weakref.WeakValueDictionary()
        self._named: contextlib.AbstractContextManager[Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self) -> None:
        """Acquire the named connection and open it now, so errors surface at open time."""
        named = self._adapter.connection_named(CONNECTION_NAME)
        named.__enter__()
        self._named = named
        try:
            self._adapter.connections.get_thread_connection().handle  # noqa: B018 - opens it
        except Exception as exc:
            raise self._connect_error(exc) from exc

    def _connect_error(self, exc: BaseException) -> WarehouseError:
        text = _one_line(exc)
        where = f"profile {self.profile_name!r}, target {self.target_name!r}"
        if self.adapter_type == "duckdb" and any(m in text.lower() for m in _LOCK_MARKERS):
            path = getattr(self._session.config.credentials, "path", "?")
            return WarehouseError(
                f"Another process holds the DuckDB database file {path} ({where}); is dbt "
                f"still running? DuckDB lets only one process open a file read-write. Wait "
                f"for that process to finish (or stop it), then run again. DuckDB said: {text}"
            )
        return WarehouseError(
            f"Could not connect to the {self.adapter_type} warehouse ({where}): {text}. "
            f"`dbt debug` checks the same connection."
        )

    def close(self) -> None:
        """Close unfinished streams, release the connection and clean up dbt's adapters."""
        if self._closed:
            return
        self._closed = True
        from dbt_dinmo._dbt_adapter import reset_dbt_adapters

        try:
            for gen in list(self._streams.values()):
                with contextlib.suppress(Exception):
                    gen.close()
            self._streams.clear()
            if self._named is not None:
                with contextlib.suppress(Exception):
                    self._named.__exit__(None, None, None)
                self._named = None
            if self.adapter_type == "duckdb":
                with contextlib.suppress(Exception):
                    _close_duckdb_environment(self._adapter)
        finally:
            with contextlib.suppress(Exception):
                reset_dbt_adapters()
            self._session.restore_events()
            _release_slot(self)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def adapter(self) -> Any:
        """The underlying dbt adapter (escape hatch; prefer the methods of this class)."""
        return self._adapter

    def _check(self) -> None:
        if self._closed:
            raise WarehouseError("The warehouse connection is closed.")
        if threading.get_ident() != self._thread:
            raise WarehouseError(
                "The warehouse must be used from the thread that opened it (dbt keys connections by thread)."
            )
        if self._busy:
            raise WarehouseError(
                "A stream is still open on the warehouse connection: consume it fully or "
                "call its close() first."
            )

    # -- metadata ----------------------------------------------------------------------------

    def columns(self, database: str | None, schema: str, identifier: str) -> list[Column] | None:
        """Real columns of a relation, or None when it does not exist (model not built).

        Adapters with a standard ``information_schema`` are asked directly (one small SELECT);
        others go through dbt's macros, which must be parsed first (about a second).
        """
        self._check()
        db = database if database is not None else self.database
        if self.adapter_type in _INFORMATION_SCHEMA_ADAPTERS:
            with contextlib.suppress(WarehouseError):
                return self._information_schema_columns(db, schema, identifier)
        self._session.ensure_macros()  # parsed on first use: stream() does not need macros
        try:
            relation = self._adapter.get_relation(db, schema, identifier)
            cols = [] if relation is None else self._adapter.get_columns_in_relation(relation)
        except Exception as exc:
            raise WarehouseError(
                f"Could not read the columns of {db}.{schema}.{identifier}: {_one_line(exc)}"
            ) from exc
        finally:
            # end the transaction dbt may have opened for these reads (no idle transaction)
            with contextlib.suppress(Exception):
                self._adapter.connections.rollback_if_open()
        if relation is None:
            return None
        return [Column(str(c.name), _type_name(c)) for c in cols]

    def _information_schema_columns(
        self, database: str | None, schema: str, identifier: str
    ) -> list[Column] | None:
        def lit(text: str) -> str:
            return "'" + text.lower().replace("'", "''") + "'"

        where = f"lower(table_schema) = {lit(schema)} and lower(table_name) = {lit(identifier)}"
        if database:
            where += f" and lower(table_catalog) = {lit(database)}"
        sql = (
            "select column_name, data_type from information_schema.columns "
            f"where {where} order by ordinal_position"
        )
        rows = [row for batch in self.stream(sql, 10_000) for row in batch.to_pylist()]
        if not rows:
            return None
        values = [list(row.values()) for row in rows]
        return [Column(str(name), str(data_type)) for name, data_type in values]

    def quote(self, name: str) -> str:
        """Quote an identifier the way the adapter does."""
        return str(self._adapter.quote(name))

    # -- streaming ---------------------------------------------------------------------------

    def stream_relation(
        self, relation_name: str, columns: Sequence[str], batch_rows: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``select <quoted columns> from <relation_name>`` as Arrow batches."""
        if isinstance(columns, str) or not columns:
            raise ValueError("columns must be a non-empty sequence of column names")
        select = ", ".join(self.quote(c) for c in columns)
        return self.stream(f"select {select} from {relation_name}", batch_rows)

    def stream(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Stream a SELECT as Arrow record batches on the adapter's own connection.

        Batches hold at most ``batch_rows`` rows (often fewer). At least one batch is
        yielded, empty when the query returns no rows, so the schema is always known.
        Call from the thread that opened the warehouse; consume it fully or close() it.
        """
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        self._check()
        token = object()
        gen = self._run(sql, batch_rows, token)
        self._streams[token] = gen
        return gen

    def _run(self, sql: str, batch_rows: int, token: object) -> Generator[pa.RecordBatch, None, None]:
        try:
            self._check()
            self._busy = True
            try:
                yield from self._batches(sql, batch_rows)
            finally:
                self._busy = False
        finally:
            self._streams.pop(token, None)

    def _batches(self, sql: str, batch_rows: int) -> Generator[pa.RecordBatch, None, None]:
        try:
            handle = self._adapter.connections.get_thread_connection().handle
            if self.adapter_type == "duckdb":
                source = self._duckdb_batches(handle, sql, batch_rows)
            elif type(handle).__module__.startswith("psycopg"):
                source = self._server_cursor_batches(handle, sql, batch_rows)
            else:
                source = self._dbapi_batches(handle, sql, batch_rows)
            try:
                for batch in source:
                    if batch.num_rows <= batch_rows:
                        yield batch
                    else:
                        for start in range(0, batch.num_rows, batch_rows):
                            yield batch.slice(start, batch_rows)
            finally:
                source.close()
        except DinmoError:
            raise
        except Exception as exc:
            raise WarehouseError(f"Query failed on {self.adapter_type}: {_one_line(exc)}") from exc

    def _duckdb_batches(
        self, handle: Any, sql: str, batch_rows: int
    ) -> Generator[pa.RecordBatch, None, None]:
        """dbt-duckdb: a lazy relation on dbt's own cursor, read as an Arrow reader."""
        import pyarrow as pa

        cursor = handle.cursor()
        relation = cursor.sql(sql)
        if relation is None:
            raise WarehouseError("stream() takes a SELECT; the statement returned no rows.")
        to_reader = getattr(relation, "to_arrow_reader", None)  # duckdb >= 1.4 / 2.0
        if to_reader is None:
            to_reader = relation.fetch_record_batch  # older duckdb
        reader: pa.RecordBatchReader = to_reader(batch_rows)
        try:
            yielded = False
            for batch in reader:
                yielded = True
                yield batch
            if not yielded:
                yield pa.RecordBatch.from_pylist([], schema=reader.schema)
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _server_cursor_batches(
        self, handle: Any, sql: str, batch_rows: int
    ) -> Generator[pa.RecordBatch, None, None]:
        """psycopg-family: a named (server-side) cursor on dbt's connection, then rollback."""
        # Close any transaction dbt opened (its bookkeeping stays right), then read in a
        # transaction of our own that ends with a rollback.
        with contextlib.suppress(Exception):
            self._adapter.connections.rollback_if_open()
        autocommit = bool(getattr(handle, "autocommit", False))
        name = f"dbt_dinmo_{uuid.uuid4().hex[:12]}"
        cursor = handle.cursor(name=name, withhold=autocommit)
        with contextlib.suppress(Exception):
            cursor.itersize = batch_rows
        try:
            cursor.execute(sql)
            rows = cursor.fetchmany(batch_rows)  # a named cursor's description needs a fetch
            converter = _RowsToArrow.from_description(cursor.description, postgres=True)
            yield converter.batch(rows)
            while rows:
                rows = cursor.fetchmany(batch_rows)
                if rows:
                    yield converter.batch(rows)
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
            if not autocommit:
                with contextlib.suppress(Exception):
                    handle.rollback()

    def _dbapi_batches(self, handle: Any, sql: str, batch_rows: int) -> Generator[pa.RecordBatch, None, None]:
        """Any other DB-API handle: cursor.fetchmany, converted to Arrow."""
        if not hasattr(handle, "cursor"):
            raise WarehouseError(
                f"Streaming rows is not supported for the {self.adapter_type} adapter yet "
                f"(its connection handle {type(handle).__name__} is not a DB-API connection)."
            )
        cursor = handle.cursor()
        try:
            cursor.execute(sql)
            converter = _RowsToArrow.from_description(cursor.description, postgres=False)
            rows = cursor.fetchmany(batch_rows)
            yield converter.batch(rows)
            while rows:
                rows = cursor.fetchmany(batch_rows)
                if rows:
                    yield converter.batch(rows)
        finally:
            with contextlib.suppress(Exception):
                cursor.close()


# PostgreSQL type OIDs whose Arrow type is known up front (stable schema across batches).
_PG_JSON = frozenset({114, 3802})
_PG_NUMERIC = 1700
# Unconstrained NUMERIC (e.g. sum() or avg() of a numeric column) has no declared precision:
# it becomes DECIMAL(38, 16), values rounded half-even to 16 places when they have more.
FREE_NUMERIC_PRECISION, FREE_NUMERIC_SCALE = 38, 16


def _pg_type(type_code: Any, precision: Any, scale: Any) -> pa.DataType | None:
    import pyarrow as pa

    if not isinstance(type_code, int):
        return None
    if type_code == _PG_NUMERIC:
        if isinstance(precision, int) and isinstance(scale, int) and 0 < precision <= 38:
            return pa.decimal128(precision, max(scale, 0))
        return pa.decimal128(FREE_NUMERIC_PRECISION, FREE_NUMERIC_SCALE)
    simple: dict[int, pa.DataType] = {
        16: pa.bool_(),
        20: pa.int64(),
        21: pa.int16(),
        23: pa.int32(),
        700: pa.float32(),
        701: pa.float64(),
        19: pa.string(),  # name
        25: pa.string(),  # text
        1042: pa.string(),  # char(n)
        1043: pa.string(),  # varchar(n)
        114: pa.string(),  # json, sent as its JSON text
        3802: pa.string(),  # jsonb, sent as its JSON text
        1082: pa.date32(),
        1114: pa.timestamp("us"),
        1184: pa.timestamp("us", tz="UTC"),
    }
    arrays: dict[int, pa.DataType] = {
        1000: pa.bool_(),
        1005: pa.int16(),
        1007: pa.int32(),
        1016: pa.int64(),
        1021: pa.float32(),
        1022: pa.float64(),
        1009: pa.string(),
        1014: pa.string(),
        1015: pa.string(),
        1182: pa.date32(),
    }
    if type_code in arrays:
        return pa.list_(arrays[type_code])
    return simple.get(type_code)


class _RowsToArrow:
    """Turns DB-API row tuples into record batches.

    Types come from the cursor description when known (PostgreSQL OIDs), so every batch has
    the same schema. Otherwise pyarrow infers them, and the type inferred for the first batch
    where a column has a value is kept for later batches when the values allow it.
    """

    def __init__(
        self, names: list[str], types: list[pa.DataType | None], json_cols: set[int], round_cols: set[int]
    ) -> None:
        self.names = names
        self.types = types
        self.json_cols = json_cols
        self.round_cols = round_cols
        self.declared = {i for i, t in enumerate(types) if t is not None}

    @classmethod
    def from_description(cls, description: Any, *, postgres: bool) -> _RowsToArrow:
        if not description:
            raise WarehouseError("stream() takes a SELECT; the statement returned no rows.")
        names: list[str] = []
        types: list[pa.DataType | None] = []
        json_cols: set[int] = set()
        round_cols: set[int] = set()
        for i, col in enumerate(description):
            names.append(str(col[0]))
            if not postgres:
                types.append(None)
                continue
            code = col[1]
            precision = col[4] if len(col) > 4 else None
            scale = col[5] if len(col) > 5 else None
            arrow_type = _pg_type(code, precision, scale)
            types.append(arrow_type)
            if code in _PG_JSON:
                json_cols.add(i)
            if (
                code == _PG_NUMERIC
                and arrow_type is not None
                and arrow_type.scale == FREE_NUMERIC_SCALE
                and arrow_type.precision == FREE_NUMERIC_PRECISION
            ):
                round_cols.add(i)
        return cls(names, types, json_cols, round_cols)

    def batch(self, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
        import pyarrow as pa

        arrays: list[pa.Array] = []
        for i, name in enumerate(self.names):
            values = [row[i] for row in rows]
            if i in self.json_cols:
                values = [_json_text(v) for v in values]
            try:
                arrays.append(self._array(i, values))
            except (pa.ArrowException, TypeError, ValueError, ArithmeticError) as exc:
                raise WarehouseError(
                    f"Column {name!r}: values cannot be converted to Arrow ({_one_line(exc)}). "
                    "Cast it to a plain type in the model."
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, names=self.names)

    def _array(self, i: int, values: list[Any]) -> pa.Array:
        import pyarrow as pa

        wanted = self.types[i]
        if i in self.declared:
            assert wanted is not None
            try:
                return pa.array(values, type=wanted)
            except (pa.ArrowException, TypeError, ValueError):
                if i not in self.round_cols:
                    raise
                return pa.array(_round_decimals(values, wanted.scale), type=wanted)
        # Inferred: infer this batch, then safely cast to the type kept from earlier batches
        # (pa.array(values, type=...) would silently truncate 1.5 to an int64 1).
        arr = pa.array(values)
        if wanted is None:
            if not pa.types.is_null(arr.type):
                self.types[i] = arr.type
            return arr
        if arr.type == wanted:
            return arr
        try:
            return arr.cast(wanted)
        except pa.ArrowException:
            # values that no longer fit: use the wider type from now on (schemas then differ)
            self.types[i] = arr.type
            return arr


def _json_text(value: Any) -> Any:
    """JSON columns travel as their JSON text (psycopg2 parses json/jsonb into Python)."""
    return value if value is None or isinstance(value, str) else json.dumps(value, default=str)


def _round_decimals(values: list[Any], scale: int) -> list[Any]:
    """Round Decimal values half-even to ``scale`` places (other values unchanged)."""
    context = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN)
    exponent = decimal.Decimal(1).scaleb(-scale)
    return [context.quantize(v, exponent) if isinstance(v, decimal.Decimal) else v for v in values]


# One open Warehouse per process: dbt's flags, adapter factory and invocation context are
# process-wide.
# Adapters whose information_schema.columns answers column lookups without dbt's macros.
_INFORMATION_SCHEMA_ADAPTERS = frozenset({"duckdb", "postgres", "redshift", "snowflake"})

_slot_lock = threading.Lock()
_open: Warehouse | None = None


def _refuse_if_open() -> None:
    if _open is not None and not _open._closed:
        raise WarehouseError(
            "A warehouse is already open in this process; close() it before opening another "
            "(dbt's adapter state is process-wide)."
        )


def _take_slot(warehouse: Warehouse) -> None:
    global _open
    with _slot_lock:
        _refuse_if_open()
        _open = warehouse


def _release_slot(warehouse: Warehouse) -> None:
    global _open
    with _slot_lock:
        if _open is warehouse:
            _open = None


def open_warehouse(
    project_dir: str | Path,
    *,
    profiles_dir: str | Path | None = None,
    profile: str | None = None,
    target: str | None = None,
    vars: str | Mapping[str, Any] | None = None,
) -> Warehouse:
    """Open the user's dbt profile/target adapter and one named connection.

    Arguments mirror dbt's ``--project-dir``, ``--profiles-dir``, ``--profile``, ``--target``
    and ``--vars``; when omitted, dbt's own defaults and ``DBT_*`` environment variables apply.
    Raises ``ConfigError`` for a missing or invalid project/profile/target and
    ``WarehouseError`` when the warehouse cannot be reached (e.g. a DuckDB file locked by a
    running dbt).
    """
    with _slot_lock:
        _refuse_if_open()  # checked again when the slot is taken
    from dbt_dinmo._dbt_adapter import open_adapter, reset_dbt_adapters

    session = open_adapter(project_dir, profiles_dir=profiles_dir, profile=profile, target=target, vars=vars)
    try:
        warehouse = Warehouse(session)
        _take_slot(warehouse)
    except BaseException:
        reset_dbt_adapters()
        session.restore_events()
        raise
    try:
        warehouse._connect()
    except BaseException:
        warehouse.close()
        raise
    return warehouse
