"""Which users exist in a Braze destination, so update-only sends never miss a profile.

Update mode, subscription statuses and user lists may only touch users that already exist in
Braze, and Braze says nothing when an update-only object names a user it does not have. So the
state store remembers, per destination and identifier namespace, the users *known to exist*:

- users an upsert or mirror activation of ours created or updated (recorded when their
  acknowledgements are folded into its state; its deletions remove them), and
- users confirmed by ``/users/export/ids`` (50 identifiers a request, the key's
  ``users.export.ids`` permission, and that endpoint's low rate limit: 250 a minute on newer
  workspaces).

A :class:`ProfileGate` takes an activation's candidates (users it is about to send), keeps the
known ones, checks the others with ``/users/export/ids`` and leaves those Braze does not have in a
*waiting* table: they are not sent, not recorded as synced, and checked again by later runs.
Users our own upserts acknowledged during this run are confirmed by an export too: Braze applies
``/users/track`` asynchronously, so an acknowledgement seconds ago does not prove the profile is
there yet. A ``braze_id`` needs no check (only Braze issues them, to existing profiles).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dbt_dinmo._aio import run_bounded
from dbt_dinmo._duck import arrow_table
from dbt_dinmo.activation import Activation, Identifier
from dbt_dinmo.braze import MAX_IDS_PER_REQUEST, RateLimits
from dbt_dinmo.state import PLAN_CHECKS, KnownKey

if TYPE_CHECKING:
    import duckdb

    from dbt_dinmo.braze import BrazeClient

log = logging.getLogger("dbt_dinmo.profiles")

EXPORT_BATCH = MAX_IDS_PER_REQUEST
RECORD_EVERY = 5_000  # export answers are written to the state in groups of this many users
EXPORT_BUCKET = "users.export.ids"
UNKNOWN = "__unknown"
WAITING = "__waiting"
NO_IDS = "SELECT NULL::VARCHAR AS __id LIMIT 0"
PLANNED_SQL = f"SELECT identifier FROM {PLAN_CHECKS} WHERE destination = $dest AND namespace = $ns"
WAITING_REASON = (
    "waiting for a Braze profile: no user with this identifier exists yet; checked again next run"
)


def namespace(identifier: Identifier) -> str | None:
    """The namespace known users are kept under, or None when no check is needed (braze_id)."""
    if identifier.type == "external_id":
        return "external_id"
    if identifier.type == "user_alias":
        return f"alias:{identifier.alias_label}"
    return None


def known_key(activation: Activation) -> KnownKey | None:
    """Where an activation's users are known to exist (None: braze_id, always existing)."""
    ns = namespace(activation.identifier)
    return KnownKey(activation.destination.identity, ns) if ns is not None else None


def export_seconds(calls: int, rate_limits: RateLimits) -> float:
    """The least time ``calls`` export requests take under the export rate limit (the first
    window's worth goes at once, each further window's worth one period later)."""
    limit = rate_limits.for_bucket(EXPORT_BUCKET)
    if calls <= 0 or limit is None:
        return 0.0
    requests, period = limit
    return float((calls - 1) // requests) * period


@dataclass(frozen=True)
class GateCounts:
    """What a gate found among an activation's candidates."""

    unknown: int  # candidates not known to exist
    waiting_before: int  # of those, not found by an earlier check (this run or a previous one)
    to_check: int  # of those, to check now (not already checked during this run)

    @property
    def export_calls(self) -> int:
        """/users/export/ids requests the check needs."""
        return -(-self.to_check // EXPORT_BATCH)


class ProfileGate:
    """Splits candidates into users known to exist and users to check or wait for."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        key: KnownKey | None,
        identifier: Identifier,
        run_started: dt.datetime,
    ) -> None:
        self.con = con
        self.key = key
        self.identifier = identifier
        self.run_started = run_started
        self.checked = 0
        self.calls = 0
        self.found = 0

    @property
    def active(self) -> bool:
        """False for braze_id activations: every candidate exists."""
        return self.key is not None

    def _trusted(self) -> str:
        """Known users this run may rely on: confirmed by an export, or acknowledged to one of
        our upserts before this run started."""
        return (
            "SELECT identifier FROM known_users WHERE destination = $dest AND namespace = $ns "
            "AND (source = 'export' OR known_at < $started)"
        )

    def _sql(self, sql: str, relation: bool = False, **extra: object) -> Any:
        """Execute with the named parameters ``sql`` uses ($dest, $ns, $started and ``extra``);
        with ``relation``, return a relation instead (read as Arrow without a copy)."""
        assert self.key is not None
        params = {
            "dest": self.key.destination,
            "ns": self.key.namespace,
            "started": self.run_started,
            **extra,
        }
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        return self.con.sql(sql, params=used) if relation else self.con.execute(sql, used)

    def split(self, candidates_sql: str, *, plan: bool = False) -> GateCounts:
        """Materialize the unknown candidates (``__unknown``) of ``SELECT __id ...``; count them.

        In a plan (``plan``), users an earlier activation of the plan would check are not counted
        again, and this activation's are noted in the plan's scratch table (see
        :meth:`dbt_dinmo.state.StateStore.begin_plan`)."""
        if self.key is None:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {UNKNOWN} AS {NO_IDS}")
            return GateCounts(0, 0, 0)
        self._sql(
            f"CREATE OR REPLACE TEMP TABLE {UNKNOWN} AS SELECT DISTINCT c.__id FROM ({candidates_sql}) AS c "
            f"WHERE c.__id IS NOT NULL AND c.__id NOT IN ({self._trusted()})"
        )
        unknown, before = self._sql(
            f"SELECT count(*), count(m.identifier) FROM {UNKNOWN} AS u LEFT JOIN (SELECT identifier "
            "FROM missing_profiles WHERE destination = $dest AND namespace = $ns) AS m "
            "ON m.identifier = u.__id"
        ).fetchall()[0]
        to_check = f"SELECT u.__id FROM {UNKNOWN} AS u WHERE u.__id NOT IN ({self._checked_this_run()})"
        if plan:
            to_check += f" AND u.__id NOT IN ({PLANNED_SQL})"
        n = int(self._sql(f"SELECT count(*) FROM ({to_check})").fetchall()[0][0])
        if plan:
            self._sql(f"INSERT INTO {PLAN_CHECKS} SELECT $dest, $ns, __id FROM ({to_check})")
        return GateCounts(int(unknown), int(before), n)

    def _checked_this_run(self) -> str:
        return (
            "SELECT identifier FROM missing_profiles WHERE destination = $dest AND namespace = $ns "
            "AND last_checked_at >= $started"
        )

    async def check(
        self,
        client: BrazeClient,
        max_in_flight: int,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Check the unknown candidates not yet checked this run with /users/export/ids; record
        who exists and who does not; fill ``__waiting``. Returns how many are waiting."""
        if self.key is None:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {WAITING} AS {NO_IDS}")
            return 0
        # As Arrow (compact), sliced into Python lists one request at a time.
        ids = arrow_table(
            self._sql(
                f"SELECT u.__id FROM {UNKNOWN} AS u WHERE u.__id NOT IN ({self._checked_this_run()}) "
                "ORDER BY u.__id",
                relation=True,
            )
        ).column(0)
        chunks = (ids.slice(i, EXPORT_BATCH).to_pylist() for i in range(0, len(ids), EXPORT_BATCH))

        found_buffer: list[str] = []
        missing_buffer: list[str] = []

        def record() -> None:
            if found_buffer or missing_buffer:
                self._record(found_buffer, missing_buffer)
                found_buffer.clear()
                missing_buffer.clear()

        async def one(chunk: list[str]) -> None:
            found = await self._export(client, chunk)
            self.calls += 1
            self.checked += len(chunk)
            self.found += len(found)
            found_buffer.extend(sorted(found))
            missing_buffer.extend(i for i in chunk if i not in found)
            if len(found_buffer) + len(missing_buffer) >= RECORD_EVERY:
                record()
            if progress is not None:
                progress(self.checked)

        if len(ids):
            log.debug(
                "checking %d users with /users/export/ids (%d calls) before sending to them",
                len(ids),
                -(-len(ids) // EXPORT_BATCH),
            )
        try:
            await run_bounded(chunks, one, max_in_flight)
        finally:
            record()
            self._sql(
                f"CREATE OR REPLACE TEMP TABLE {WAITING} AS SELECT u.__id FROM {UNKNOWN} AS u "
                f"WHERE u.__id NOT IN ({self._trusted()})"
            )
        return int(self.con.execute(f"SELECT count(*) FROM {WAITING}").fetchall()[0][0])

    async def _export(self, client: BrazeClient, chunk: list[str]) -> set[str]:
        """The identifiers of ``chunk`` that Braze has a profile for."""
        ident = self.identifier
        if ident.type == "user_alias":
            label = ident.alias_label or ""
            response = await client.export_ids(
                user_aliases=[{"alias_name": i, "alias_label": label} for i in chunk],
                fields_to_export=("user_aliases",),
            )
            names = {
                str(alias.get("alias_name"))
                for user in response.users
                for alias in user.get("user_aliases") or []
                if isinstance(alias, dict) and alias.get("alias_label") == label
            }
        else:
            response = await client.export_ids(external_ids=chunk, fields_to_export=("external_id",))
            names = {str(u.get("external_id")) for u in response.users if u.get("external_id") is not None}
        return names & set(chunk)

    def _record(self, found: list[str], missing: list[str]) -> None:
        """Found users become known (source ``export``); missing ones are noted with the check
        (one transaction for many answers: a crash loses only answers, which are asked again)."""
        now = dt.datetime.now(dt.timezone.utc)
        con = self.con
        con.register("__found", pa.table({"id": pa.array(found, type=pa.string())}))
        con.register("__missing", pa.table({"id": pa.array(missing, type=pa.string())}))
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                self._sql(
                    "DELETE FROM known_users WHERE destination = $dest AND namespace = $ns "
                    "AND identifier IN (SELECT id FROM __found)",
                    now=now,
                )
                self._sql(
                    "INSERT INTO known_users SELECT $dest, $ns, id, 'export', $now FROM __found", now=now
                )
                self._sql(
                    "CREATE OR REPLACE TEMP TABLE __mp AS SELECT m.id, "
                    "coalesce(p.first_checked_at, $now) AS first, coalesce(p.checks, 0) + 1 AS checks "
                    "FROM __missing AS m LEFT JOIN (SELECT * FROM missing_profiles "
                    "WHERE destination = $dest AND namespace = $ns) AS p ON p.identifier = m.id",
                    now=now,
                )
                self._sql(
                    "DELETE FROM missing_profiles WHERE destination = $dest AND namespace = $ns "
                    "AND (identifier IN (SELECT id FROM __found) OR identifier IN (SELECT id FROM __mp))",
                    now=now,
                )
                self._sql(
                    "INSERT INTO missing_profiles SELECT $dest, $ns, id, first, $now, checks FROM __mp",
                    now=now,
                )
                con.execute("DROP TABLE __mp")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.unregister("__found")
            con.unregister("__missing")

    def waiting_sample(self, limit: int) -> list[str]:
        """Some identifiers waiting for a profile (sorted)."""
        rows = self.con.execute(f"SELECT __id FROM {WAITING} ORDER BY __id LIMIT {int(limit)}").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Drop the temporary tables."""
        for table in (UNKNOWN, WAITING):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
