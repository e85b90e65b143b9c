"""The local state store: one DuckDB file under the state path.

Per activation it keeps, for every identifier, a 64-bit hash of the last value of each mapped
attribute that Braze acknowledged (NULL: never acknowledged). Acknowledgements are appended to a
journal table, one small transaction per acknowledged batch, and folded into the state table in
one set-based transaction at the end of a run (or at the start of the next one after a crash),
so a kill at any moment loses nothing Braze acknowledged. Runs and their rejected rows are kept
here too, for ``history`` and the TUI.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from dbt_dinmo.errors import DinmoError, StateLockedError

STATE_FILE = "state.duckdb"
LOCK_FILE = "run.lock"
ACK_LOG_DIR = "acks"
ACK_SYNC_SECONDS = 0.5  # acknowledgement logs are synced to disk at least this often
SCHEMA_VERSION = "1"
# Values whose DuckDB hashes are recorded when the store is created; a DuckDB upgrade that changed
# hash() would make every stored hash meaningless, and this canary notices it.
_CANARY_SQL = "SELECT xor(xor(hash(42::BIGINT), hash('dinmo')), xor(hash(1.5::DOUBLE), hash(NULL)))"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS activations (
    name VARCHAR PRIMARY KEY, identity VARCHAR, state_table VARCHAR,
    attributes VARCHAR[], created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, command VARCHAR, started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ, status VARCHAR, args JSON);
CREATE TABLE IF NOT EXISTS run_activations (
    run_id VARCHAR, activation VARCHAR, service VARCHAR, sync_mode VARCHAR, destination VARCHAR,
    status VARCHAR, message VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    source_rows BIGINT, inserted BIGINT, updated BIGINT, deleted BIGINT, unchanged BIGINT,
    rejected BIGINT, retried BIGINT, failed BIGINT, deletes_blocked BIGINT,
    attribute_writes BIGINT, requests BIGINT, entered BIGINT DEFAULT 0, exited BIGINT DEFAULT 0,
    waiting BIGINT DEFAULT 0, profiles_checked BIGINT DEFAULT 0, export_calls BIGINT DEFAULT 0);
CREATE TABLE IF NOT EXISTS rejected_rows (
    run_id VARCHAR, activation VARCHAR, identifier VARCHAR, reason VARCHAR, origin VARCHAR,
    detail VARCHAR);
CREATE TABLE IF NOT EXISTS event_marks (
    activation VARCHAR PRIMARY KEY, scheme VARCHAR, cursor_column VARCHAR, cursor_kind VARCHAR,
    cursor_value VARCHAR, updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS known_users (
    destination VARCHAR, namespace VARCHAR, identifier VARCHAR, source VARCHAR, known_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS missing_profiles (
    destination VARCHAR, namespace VARCHAR, identifier VARCHAR, first_checked_at TIMESTAMPTZ,
    last_checked_at TIMESTAMPTZ, checks BIGINT);
"""
# Figures added after the first release: added to existing state files too.
# A plan's scratch (an in-memory database attached to the state's): users a plan would check.
PLAN_SCRATCH = "dinmo_plan"
PLAN_CHECKS = f"{PLAN_SCRATCH}.profile_checks"
HISTORY_COUNTS_ADDED = ("entered", "exited", "waiting", "profiles_checked", "export_calls")
_MIGRATIONS = "".join(
    f"ALTER TABLE run_activations ADD COLUMN IF NOT EXISTS {c} BIGINT DEFAULT 0;\n"
    for c in HISTORY_COUNTS_ADDED
)


def attribute_column(attribute: str) -> str:
    """State column for a Braze attribute: stable, case-safe, any attribute name allowed."""
    return "a_" + hashlib.sha1(attribute.encode()).hexdigest()[:16]


def _table_name(activation: str, prefix: str = "st") -> str:
    digest = hashlib.sha1(activation.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() else "_" for c in activation.lower())[:40]
    return f"{prefix}_{safe}_{digest}"


@dataclass(frozen=True)
class KnownKey:
    """Which users of which destination an activation's acknowledgements prove to exist: the
    destination's identity and the identifier namespace (``external_id``, ``alias:<label>``)."""

    destination: str
    namespace: str


@dataclass(frozen=True)
class ActivationState:
    """Where one activation's state lives and which attributes it tracks."""

    name: str
    table: str
    journal: str
    attributes: tuple[str, ...]
    reset_reason: str | None  # why the state was started afresh this run, if it was
    # Set for activations that create the users they send (upsert, mirror): folding their
    # acknowledgements records those users as known to exist (and their deletions as gone).
    creates: KnownKey | None = None
    # Segments: acknowledged entries and exits since the last fold, one JSON object per line.
    member_log: Path | None = None


@dataclass(frozen=True)
class Watermark:
    """Where an event activation's next cursor window starts (before the lookback).

    The lowest cursor of the rows a run read but could not get acknowledged, or, when every row
    it read is acknowledged, the highest cursor it read. ``value`` is text: epoch microseconds for
    timestamps, ISO for dates, the number itself otherwise.
    """

    column: str
    kind: str  # "timestamp" | "timestamptz" | "date" | "integer" | "number"
    value: str


@dataclass(frozen=True)
class EventState:
    """Where one event activation's sent identities live."""

    name: str
    table: str  # (__id VARCHAR, __sent_at TIMESTAMPTZ): every acknowledged event identity
    journal: str  # (__id, __seq, __at): recorded as sent without sending (backfill), not yet folded
    ack_log: Path  # acknowledged identities since the last fold: one JSON array per line
    reset_reason: str | None  # why the state was started afresh this run, if it was
    initialized: bool  # a run got past its first pass (what backfill: false keys on)
    scheme: str | None  # how identities were computed when events were last recorded
    watermark: Watermark | None


def _datasync(fd: int) -> None:
    """Flush a file's data to disk (``fdatasync`` where the OS has it)."""
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


class RunLock:
    """An exclusive, non-blocking lock on the state directory (released by the OS on kill)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateLockedError naming the holder."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"another dbt-dinmo run (pid {holder}) is using the state in {self.path.parent}; "
                "wait for it to finish, then run again."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StateStore:
    """The DuckDB state file: attribute hashes, acknowledgement journals and run history."""

    def __init__(self, state_dir: Path, *, read_only: bool = False, memory_limit: str = "512MB"):
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        self.read_only = read_only
        self._writer_con: duckdb.DuckDBPyConnection | None = None
        self._ack_logs: dict[Path, int] = {}  # open acknowledgement logs (append-only fds)
        self._ack_synced = 0.0  # monotonic time of the last sync of an acknowledgement log
        if read_only and not self.path.exists():
            self.con = duckdb.connect(":memory:")
        else:
            state_dir.mkdir(parents=True, exist_ok=True)
            try:
                self.con = duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    raise StateLockedError(
                        f"the state file {self.path} is in use by another dbt-dinmo process; "
                        "wait for it to finish."
                    ) from None
                raise DinmoError(f"cannot open the state file {self.path}: {exc}") from None
        tmp = state_dir / "tmp"
        with contextlib.suppress(duckdb.Error):
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
            self.con.execute(f"SET temp_directory = '{tmp}'")
            self.con.execute("SET preserve_insertion_order = false")
        if not read_only or not self.path.exists():
            self.con.execute(_SCHEMA)
            if not read_only:
                self.con.execute(_MIGRATIONS)
            self._check_canary()

    def close(self) -> None:
        """Close the DuckDB connection."""
        for fd in self._ack_logs.values():
            os.close(fd)
        self._ack_logs.clear()
        if self._writer_con is not None:
            self._writer_con.close()
        self.con.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_plan(self) -> None:
        """Start a plan's scratch: users the plan's activations would check (counted once)."""
        self.con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {PLAN_SCRATCH}")
        self.con.execute(
            f"CREATE OR REPLACE TABLE {PLAN_CHECKS} "
            "(destination VARCHAR, namespace VARCHAR, identifier VARCHAR)"
        )

    # -- hash canary -----------------------------------------------------------------------
    def _check_canary(self) -> None:
        current = str(self.con.execute(_CANARY_SQL).fetchall()[0][0])
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'hash_canary'").fetchall()
        row = rows[0] if rows else None
        if row is None:
            if not self.read_only:
                self.con.execute(
                    "INSERT INTO meta VALUES ('hash_canary', ?), ('schema_version', ?)",
                    [current, SCHEMA_VERSION],
                )
            self.hash_changed = False
        else:
            self.hash_changed = row[0] != current

    # -- activation state ------------------------------------------------------------------
    def activation_state(
        self,
        name: str,
        identity: str,
        attributes: Sequence[str],
        *,
        prepare: bool = True,
        creates: KnownKey | None = None,
    ) -> ActivationState:
        """Return (creating or migrating when ``prepare``) the state of one activation.

        A changed identity (destination, REST URL or identifier) starts a fresh state; attributes
        added to the mapping get a new, empty column (back-fill); removed ones are dropped so a
        later re-add back-fills again. With ``creates``, the users already in the state are
        recorded as known to exist in the destination (once: states written before known users
        were tracked).
        """
        table = _table_name(name)
        journal = table + "_journal"
        rows = self.con.execute(
            "SELECT identity, attributes FROM activations WHERE name = ?", [name]
        ).fetchall()
        row = rows[0] if rows else None
        reset_reason = None
        if row is not None and row[0] != identity:
            reset_reason = "the destination or identifier changed"
        if self.hash_changed and row is not None:
            reset_reason = "DuckDB's hash function changed since the state was written"
        member_log = self.dir / ACK_LOG_DIR / f"{table}.jsonl"
        state = ActivationState(name, table, journal, tuple(attributes), reset_reason, creates, member_log)
        if self.read_only:
            return state
        if reset_reason is None:
            self.fold(state)  # acknowledgements journaled by an interrupted run
            if creates is not None and prepare:
                self._seed_known(state, creates)
        if not prepare:
            return state
        now = dt.datetime.now(dt.timezone.utc)
        with self.transaction():
            if reset_reason is not None:
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
                self.con.execute(f"DROP TABLE IF EXISTS {journal}")
                self._drop_ack_log(member_log)
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} (__id VARCHAR, __synced_at TIMESTAMPTZ)")
            self.con.execute(
                f"CREATE TABLE IF NOT EXISTS {journal} "
                "(__id VARCHAR, __op VARCHAR, __seq BIGINT, __at TIMESTAMPTZ)"
            )
            existing = self._columns(table)
            wanted = {attribute_column(a) for a in attributes}
            for col in wanted - existing:
                self.con.execute(f"ALTER TABLE {table} ADD COLUMN {col} UBIGINT")
            for col in existing - wanted - {"__id", "__synced_at"}:
                self.con.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
            jexisting = self._columns(journal)
            for col in wanted - jexisting:
                self.con.execute(f"ALTER TABLE {journal} ADD COLUMN {col} UBIGINT")
            self.con.execute(
                "INSERT INTO activations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET identity = excluded.identity, state_table = excluded.state_table, "
                "attributes = excluded.attributes, updated_at = excluded.updated_at",
                [name, identity, table, list(attributes), now, now],
            )
        return state

    def _seed_known(self, state: ActivationState, key: KnownKey) -> None:
        """Record every user of a creating activation's state as known (once per state table)."""
        mark = f"known_seeded:{state.table}:{key.destination}:{key.namespace}"
        if self.con.execute("SELECT 1 FROM meta WHERE key = ?", [mark]).fetchall():
            return
        with self.transaction():
            if self.has_table(state.table):
                self.con.execute(
                    "INSERT INTO known_users SELECT ?, ?, s.__id, 'track', s.__synced_at "
                    f"FROM {state.table} AS s "
                    "WHERE NOT EXISTS (SELECT 1 FROM known_users k WHERE k.destination = ? "
                    "AND k.namespace = ? AND k.identifier = s.__id)",
                    [key.destination, key.namespace, key.destination, key.namespace],
                )
            self.con.execute("INSERT INTO meta VALUES (?, 'done')", [mark])

    def table_columns(self, table: str) -> set[str]:
        """Column names of a state table (empty when it does not exist)."""
        return self._columns(table)

    def _columns(self, table: str) -> set[str]:
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
        return {r[0] for r in rows}

    def has_table(self, table: str) -> bool:
        """True when the table exists in the state file."""
        return bool(self._columns(table))

    def synced_count(self, state: ActivationState) -> int:
        """How many identifiers this activation has in its acknowledged state."""
        if not self.has_table(state.table):
            return 0
        return int(self.con.execute(f"SELECT count(*) FROM {state.table}").fetchall()[0][0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A DuckDB transaction, rolled back on error."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- acknowledgements ------------------------------------------------------------------
    def journal_acks(self, state: ActivationState, acks: pa.Table) -> None:
        """Durably record acknowledged records (one transaction): ``__id``, ``__op`` and hashes."""
        # A separate cursor: the main connection may be streaming the diff's changes.
        writer = self._writer()
        writer.register("__acks", acks)
        try:
            cols = ", ".join(acks.column_names)
            writer.execute(f"INSERT INTO {state.journal} ({cols}) SELECT {cols} FROM __acks")
        finally:
            writer.unregister("__acks")

    def _writer(self) -> duckdb.DuckDBPyConnection:
        if self._writer_con is None:
            self._writer_con = self.con.cursor()
        return self._writer_con

    def fold(self, state: ActivationState) -> int:
        """Fold the journal (and a segment's member log) into the state table, one transaction
        each; return records folded."""
        members = self._fold_members(state)
        if not self.has_table(state.journal):
            return members
        pending = int(self.con.execute(f"SELECT count(*) FROM {state.journal}").fetchall()[0][0])
        if not pending:
            return members
        cols = sorted(self._columns(state.journal) - {"__id", "__op", "__seq", "__at"})
        st_cols = self._columns(state.table)
        cols = [c for c in cols if c in st_cols]
        agg = ", ".join(f"arg_max({c}, __seq) FILTER (WHERE {c} IS NOT NULL) AS {c}" for c in cols)
        agg = (", " + agg) if agg else ""
        sets = ", ".join([f"{c} = coalesce(j.{c}, t.{c})" for c in cols] + ["__synced_at = j.__at"])
        ins_cols = ", ".join(["__id", "__synced_at", *cols])
        ins_vals = ", ".join(["j.__id", "j.__at", *(f"j.{c}" for c in cols)])
        t, jn = state.table, state.journal
        with self.transaction():
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE __j AS SELECT __id, arg_max(__op, __seq) AS __op, "
                f"max(__at) AS __at{agg} FROM {jn} GROUP BY __id"
            )
            self.con.execute(f"DELETE FROM {t} WHERE __id IN (SELECT __id FROM __j WHERE __op = 'delete')")
            self.con.execute(
                f"UPDATE {t} AS t SET {sets} FROM __j AS j WHERE t.__id = j.__id AND j.__op = 'upsert'"
            )
            self.con.execute(
                f"INSERT INTO {t} ({ins_cols}) SELECT {ins_vals} FROM __j AS j "
                f"WHERE j.__op = 'upsert' AND NOT EXISTS (SELECT 1 FROM {t} AS x WHERE x.__id = j.__id)"
            )
            if state.creates is not None:
                self._record_known(state.creates)
            self.con.execute(f"DELETE FROM {jn}")
            self.con.execute("DROP TABLE __j")
        return pending + members

    def journal_members(self, state: ActivationState, entries: Sequence[str], exits: Sequence[str]) -> None:
        """Record a segment's acknowledged entries and exits: one line appended to its member log
        (microseconds, and safe from a kill at any moment, as :meth:`journal_events`)."""
        assert state.member_log is not None
        self._append_ack(state.member_log, orjson.dumps({"in": list(entries), "out": list(exits)}))

    def _fold_members(self, state: ActivationState) -> int:
        """Apply a segment's member log to its state (entries added, exits removed) in one
        transaction, then remove the log. Idempotent, so a crash between the two is harmless."""
        path = state.member_log
        if path is None or not path.exists() or not self.has_table(state.table):
            return 0
        ids: list[str] = []
        ops: list[bool] = []
        for line in self._read_ack_lines(path):
            if isinstance(line, dict):
                for key, entry in (("in", True), ("out", False)):
                    values = [str(i) for i in line.get(key) or []]
                    ids.extend(values)
                    ops.extend([entry] * len(values))
        if ids:
            acks = pa.table(
                {"__id": pa.array(ids, type=pa.string()), "__in": pa.array(ops, type=pa.bool_())}
            ).append_column("__seq", pa.array(range(len(ids)), type=pa.int64()))
            now = dt.datetime.now(dt.timezone.utc)
            t = state.table
            self.con.register("__macks", acks)
            try:
                with self.transaction():
                    self.con.execute(
                        "CREATE OR REPLACE TEMP TABLE __m AS SELECT __id, arg_max(__in, __seq) AS __in "
                        "FROM __macks GROUP BY __id"
                    )
                    self.con.execute(f"DELETE FROM {t} WHERE __id IN (SELECT __id FROM __m WHERE NOT __in)")
                    self.con.execute(
                        f"INSERT INTO {t} (__id, __synced_at) SELECT m.__id, ?::TIMESTAMPTZ FROM __m AS m "
                        f"WHERE m.__in AND m.__id NOT IN (SELECT __id FROM {t})",
                        [now],
                    )
                    self.con.execute("DROP TABLE __m")
            finally:
                self.con.unregister("__macks")
        self._drop_ack_log(path)
        return len(ids)

    def _record_known(self, key: KnownKey) -> None:
        """Inside :meth:`fold`: users upserted by a creating activation now exist in Braze; users it
        deleted no longer do."""
        dest, ns = key.destination, key.namespace
        self.con.execute(
            "DELETE FROM known_users WHERE destination = ? AND namespace = ? "
            "AND identifier IN (SELECT __id FROM __j WHERE __op = 'delete')",
            [dest, ns],
        )
        self.con.execute(
            "INSERT INTO known_users SELECT ?, ?, j.__id, 'track', j.__at FROM __j AS j "
            "WHERE j.__op = 'upsert' AND NOT EXISTS (SELECT 1 FROM known_users k "
            "WHERE k.destination = ? AND k.namespace = ? AND k.identifier = j.__id)",
            [dest, ns, dest, ns],
        )
        self.con.execute(
            "DELETE FROM missing_profiles WHERE destination = ? AND namespace = ? "
            "AND identifier IN (SELECT __id FROM __j WHERE __op = 'upsert')",
            [dest, ns],
        )

    # -- event state -----------------------------------------------------------------------
    def event_state(self, name: str, identity: str, *, prepare: bool = True) -> EventState:
        """Return (creating when ``prepare``) the sent-identity state of one event activation.

        A changed identity (destination or event name) starts a fresh state. Identities journaled
        by an interrupted run are folded in first.
        """
        table = _table_name(name, "ev")
        journal = table + "_journal"
        rows = self.con.execute("SELECT identity FROM activations WHERE name = ?", [name]).fetchall()
        reset_reason = None
        if rows and rows[0][0] != identity:
            reset_reason = "the destination, service or event name changed"
        marks = self.con.execute(
            "SELECT scheme, cursor_column, cursor_kind, cursor_value FROM event_marks WHERE activation = ?",
            [name],
        ).fetchall()
        mark = marks[0] if marks and reset_reason is None else None
        watermark = None
        if mark is not None and mark[1] and mark[2] and mark[3] is not None:
            watermark = Watermark(mark[1], mark[2], mark[3])
        state = EventState(
            name,
            table,
            journal,
            self.dir / ACK_LOG_DIR / f"{table}.jsonl",
            reset_reason,
            mark is not None,
            mark[0] if mark else None,
            watermark,
        )
        if self.read_only:
            return state
        if reset_reason is None:
            self.fold_events(state)
        if not prepare:
            return state
        now = dt.datetime.now(dt.timezone.utc)
        with self.transaction():
            if reset_reason is not None:
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
                self.con.execute(f"DROP TABLE IF EXISTS {journal}")
                self.con.execute("DELETE FROM event_marks WHERE activation = ?", [name])
                self._drop_ack_log(state.ack_log)
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} (__id VARCHAR, __sent_at TIMESTAMPTZ)")
            self.con.execute(
                f"CREATE TABLE IF NOT EXISTS {journal} (__id VARCHAR, __seq BIGINT, __at TIMESTAMPTZ)"
            )
            self.con.execute(
                "INSERT INTO activations VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET identity = excluded.identity, state_table = excluded.state_table, "
                "attributes = excluded.attributes, updated_at = excluded.updated_at",
                [name, identity, table, [], now, now],
            )
        return state

    def journal_events(self, state: EventState, identities: Sequence[str], seq: int) -> None:
        """Record acknowledged event identities: one line appended to the activation's
        acknowledgement log (:meth:`fold_events` moves them into DuckDB).

        A single ``write()`` puts the line in the operating system's hands at once, so the death
        of the process at any moment (crash, Ctrl-C, ``kill -9``) loses nothing recorded; it costs
        microseconds where a DuckDB commit costs milliseconds, which matters at one call per
        acknowledged request. The data is also synced to disk at least every
        ``ACK_SYNC_SECONDS``, bounding what a power failure could lose (those events would be
        sent again, never lost)."""
        self._append_ack(state.ack_log, orjson.dumps(list(identities)))

    def _append_ack(self, path: Path, record: bytes) -> None:
        """Append one line to an acknowledgement log with a single ``write()``."""
        fd = self._ack_logs.get(path)
        if fd is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._ack_logs[path] = fd
        line = record + b"\n"
        written = os.write(fd, line)
        if written != len(line):  # never on a regular file short of a full disk
            raise DinmoError(f"could not append to {path}: disk full?")
        now = time.monotonic()
        if now - self._ack_synced >= ACK_SYNC_SECONDS:
            _datasync(fd)
            self._ack_synced = now

    def _read_ack_lines(self, path: Path) -> list[Any]:
        """The records of an acknowledgement log; a torn last line (a crash mid-write) is ignored."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        records: list[Any] = []
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # only the line being written when the process died can be torn
        return records

    def _read_ack_log(self, path: Path) -> list[str]:
        """Identities in an event acknowledgement log."""
        return [str(i) for line in self._read_ack_lines(path) if isinstance(line, list) for i in line]

    def _drop_ack_log(self, path: Path) -> None:
        fd = self._ack_logs.pop(path, None)
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def fold_events(self, state: EventState) -> int:
        """Move the acknowledged (log) and marked (journal table) identities into the sent table,
        in one transaction; then empty the log. Idempotent: an identity already sent is skipped,
        so a crash between the commit and the log's removal only folds the same ones again."""
        if not self.has_table(state.table):
            return 0
        acked = self._read_ack_log(state.ack_log)
        marked = int(self.con.execute(f"SELECT count(*) FROM {state.journal}").fetchall()[0][0])
        if not acked and not marked:
            self._drop_ack_log(state.ack_log)
            return 0
        t, jn = state.table, state.journal
        now = dt.datetime.now(dt.timezone.utc)
        acks = pa.table({"__id": pa.array(acked, type=pa.string())})
        self.con.register("__eacks", acks)
        try:
            with self.transaction():
                self.con.execute(
                    f"INSERT INTO {t} (__id, __sent_at) SELECT u.__id, min(u.__at) FROM ("
                    f"SELECT __id, __at FROM {jn} UNION ALL SELECT __id, ?::TIMESTAMPTZ FROM __eacks"
                    f") AS u ANTI JOIN {t} AS s ON s.__id = u.__id WHERE u.__id IS NOT NULL GROUP BY u.__id",
                    [now],
                )
                self.con.execute(f"DELETE FROM {jn}")
        finally:
            self.con.unregister("__eacks")
        self._drop_ack_log(state.ack_log)
        return len(acked) + marked

    def sent_count(self, state: EventState) -> int:
        """How many event identities this activation has recorded as sent."""
        if not self.has_table(state.table):
            return 0
        return int(self.con.execute(f"SELECT count(*) FROM {state.table}").fetchall()[0][0])

    def set_event_mark(
        self,
        state: EventState,
        scheme: str,
        watermark: Watermark | None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        """Record that a run completed its pass: the identity scheme and the next window's start."""
        (con or self.con).execute(
            "INSERT INTO event_marks VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (activation) DO UPDATE SET "
            "scheme = excluded.scheme, cursor_column = excluded.cursor_column, "
            "cursor_kind = excluded.cursor_kind, cursor_value = excluded.cursor_value, "
            "updated_at = excluded.updated_at",
            [
                state.name,
                scheme,
                watermark.column if watermark else None,
                watermark.kind if watermark else None,
                watermark.value if watermark else None,
                dt.datetime.now(dt.timezone.utc),
            ],
        )

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the state database (its own temporary tables and results)."""
        con = self.con.cursor()
        with contextlib.suppress(duckdb.Error):
            con.execute("SET TimeZone = 'UTC'")
        return con

    # -- history ---------------------------------------------------------------------------
    def start_run(self, run_id: str, command: str, args: str) -> None:
        """Record that a run started."""
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, NULL, 'running', ?)",
            [run_id, command, dt.datetime.now(dt.timezone.utc), args],
        )

    def finish_run(self, run_id: str, status: str) -> None:
        """Record that a run ended."""
        self.con.execute(
            "UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
            [dt.datetime.now(dt.timezone.utc), status, run_id],
        )

    def record_activation(self, run_id: str, values: dict[str, Any]) -> None:
        """Insert (or replace) one activation's figures for a run."""
        self.con.execute(
            "DELETE FROM run_activations WHERE run_id = ? AND activation = ?",
            [run_id, values["activation"]],
        )
        cols = ", ".join(["run_id", *values])
        marks = ", ".join("?" * (len(values) + 1))
        self.con.execute(f"INSERT INTO run_activations ({cols}) VALUES ({marks})", [run_id, *values.values()])

    def record_rejections(self, run_id: str, activation: str, rows: pa.Table) -> None:
        """Store rejected rows (identifier, reason, origin, detail) of one activation."""
        if rows.num_rows == 0:
            return
        self.con.register("__rej", rows)
        try:
            self.con.execute(
                "INSERT INTO rejected_rows SELECT ?, ?, identifier, reason, origin, detail FROM __rej",
                [run_id, activation],
            )
        finally:
            self.con.unregister("__rej")

    def previous_rejections(self, activation: str, column: str = "identifier") -> set[str]:
        """Identifiers (or ``detail`` values) rejected by this activation's latest finished run."""
        if column not in ("identifier", "detail"):
            raise ValueError(column)
        row = self.con.execute(
            "SELECT run_id FROM run_activations WHERE activation = ? AND status != 'skipped' "
            "ORDER BY started_at DESC LIMIT 1",
            [activation],
        ).fetchall()
        if not row:
            return set()
        rows = self.con.execute(
            f"SELECT {column} FROM rejected_rows WHERE run_id = ? AND activation = ? "
            f"AND {column} IS NOT NULL",
            [row[0][0], activation],
        ).fetchall()
        return {r[0] for r in rows}

    def last_started(self) -> dict[str, dt.datetime]:
        """When each activation last ran (skipped runs excluded): the base of its schedule."""
        rows = self.con.execute(
            "SELECT activation, max(started_at) FROM run_activations WHERE status != 'skipped' "
            "GROUP BY activation"
        ).fetchall()
        return dict(rows)

    def last_results(self) -> dict[str, dict[str, Any]]:
        """The latest history row of each activation."""
        cur = self.con.execute(
            "SELECT * FROM run_activations QUALIFY row_number() OVER "
            "(PARTITION BY activation ORDER BY started_at DESC) = 1"
        )
        names = [d[0] for d in cur.description]
        return {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}

    def history(self, activation: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Latest activation runs, newest first."""
        where = "WHERE ra.activation = ?" if activation else ""
        params: list[Any] = [activation] if activation else []
        cur = self.con.execute(
            f"SELECT ra.* FROM run_activations ra {where} ORDER BY ra.started_at DESC LIMIT {int(limit)}",
            params,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def rejected(self, run_id: str, activation: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Rejected rows of a run."""
        where = "AND activation = ?" if activation else ""
        params: list[Any] = [run_id, activation] if activation else [run_id]
        cur = self.con.execute(
            f"SELECT * FROM rejected_rows WHERE run_id = ? {where} LIMIT {int(limit)}", params
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
