"""Tests for dbt_dinmo.warehouse against a real dbt-duckdb project built in a temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import dbt_dinmo
from dbt_dinmo.errors import ConfigError, WarehouseError
from dbt_dinmo.warehouse import Column, Warehouse, open_warehouse

REPO_ROOT = Path(dbt_dinmo.__file__).resolve().parent.parent
DBT = Path(sys.executable).parent / "dbt"
ROWS = 5000

TYPED_SQL = f"""
select
    cast(i as integer) as int_col,
    cast(i as bigint) * 1000000000 as big_col,
    i / 7.0 :: double as dbl_col,
    cast(i / 3.0 as decimal(12, 2)) as dec_col,
    i % 2 = 0 as bool_col,
    date '2024-01-01' + cast(i as integer) as date_col,
    timestamp '2024-01-01 00:00:00' + i * interval 1 minute as ts_col,
    timezone('UTC', timestamp '2024-01-01 00:00:00' + i * interval 1 second) as tstz_col,
    ['a' || i, 'b'] as list_col,
    {{'city': 'c' || i, 'zip': lpad(cast(i as varchar), 5, '0')}} as struct_col,
    case when i % 10 = 0 then null else 'v' || i end as text_col
from range({ROWS}) as t(i)
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


@pytest.fixture(scope="module")
def wh_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dbt-duckdb project, built once with `dbt build` (model `unbuilt` excluded)."""
    root = tmp_path_factory.mktemp("wh_project")
    _write(
        root / "dbt_project.yml",
        """
        name: wh_test
        version: "1.0.0"
        config-version: 2
        profile: wh_test
        models:
          wh_test:
            +materialized: table
        """,
    )
    _write(
        root / "profiles.yml",
        f"""
        wh_test:
          target: dev
          outputs:
            dev:
              type: duckdb
              path: "{root / "wh.duckdb"}"
              threads: 1
            other:
              type: duckdb
              path: "{root / "other.duckdb"}"
              threads: 1
        """,
    )
    _write(root / "seeds" / "people.csv", "id,name\n1,Ada\n2,Grace\n3,Linus\n")
    _write(root / "models" / "typed.sql", TYPED_SQL)
    _write(root / "models" / "unbuilt.sql", "select 1 as x\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    result = subprocess.run(
        [str(DBT), "build", "--exclude", "unbuilt", "--profiles-dir", str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(autouse=True)
def _no_dbt_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's DBT_* variables (e.g. DBT_TARGET) must not steer these tests."""
    for key in list(os.environ):
        if key.startswith("DBT_"):
            monkeypatch.delenv(key)


@pytest.fixture
def wh(wh_project: Path) -> Iterator[Warehouse]:
    with open_warehouse(wh_project, profiles_dir=wh_project) as warehouse:
        yield warehouse


def _expected_table(wh_project: Path) -> pa.Table:
    """The built table, read directly (only allowed in tests, with the warehouse closed)."""
    con = duckdb.connect(str(wh_project / "wh.duckdb"), read_only=True)
    try:
        return con.sql("select * from main.typed order by int_col").to_arrow_table()
    finally:
        con.close()


def test_attributes_and_columns(wh: Warehouse) -> None:
    assert wh.adapter_type == "duckdb"
    assert wh.target_name == "dev"
    assert wh.profile_name == "wh_test"
    assert wh.database == "wh"
    cols = wh.columns("wh", "main", "typed")
    assert cols is not None
    by_name = {c.name: c.data_type for c in cols}
    assert [c.name for c in cols][:3] == ["int_col", "big_col", "dbl_col"]
    assert by_name["int_col"] == "INTEGER"
    assert by_name["dec_col"] == "DECIMAL(12,2)"
    assert by_name["tstz_col"] == "TIMESTAMP WITH TIME ZONE"
    assert by_name["list_col"] == "VARCHAR[]"
    assert by_name["text_col"] == "VARCHAR"
    assert by_name["struct_col"].upper().startswith("STRUCT(")
    assert wh.columns(None, "main", "people") == [
        Column("id", "INTEGER"),
        Column("name", "VARCHAR"),
    ]


def test_columns_of_unbuilt_model_is_none(wh: Warehouse) -> None:
    assert wh.columns("wh", "main", "unbuilt") is None
    assert wh.columns("wh", "no_such_schema", "typed") is None


def test_quote(wh: Warehouse) -> None:
    assert wh.quote("first name") == '"first name"'


def test_stream_equals_table_with_types(wh: Warehouse, wh_project: Path) -> None:
    cols = [c.name for c in wh.columns("wh", "main", "typed") or []]
    batches = list(wh.stream_relation('"wh"."main"."typed"', cols, batch_rows=1000))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    got = pa.Table.from_batches(batches).sort_by("int_col")
    wh.close()
    expected = _expected_table(wh_project)
    assert got.num_rows == ROWS
    assert got.schema == expected.schema
    assert got.equals(expected)
    types = dict(zip(got.schema.names, got.schema.types, strict=True))
    assert types["int_col"] == pa.int32()
    assert types["big_col"] == pa.int64()
    assert types["dbl_col"] == pa.float64()
    assert types["dec_col"] == pa.decimal128(12, 2)
    assert types["bool_col"] == pa.bool_()
    assert types["date_col"] == pa.date32()
    assert types["ts_col"] == pa.timestamp("us")
    assert pa.types.is_timestamp(types["tstz_col"])
    assert types["tstz_col"].tz is not None
    assert pa.types.is_list(types["list_col"])
    assert types["list_col"].value_type == pa.string()
    assert pa.types.is_struct(types["struct_col"])
    row = got.slice(3, 1).to_pylist()[0]
    assert row["list_col"] == ["a3", "b"]
    assert row["struct_col"] == {"city": "c3", "zip": "00003"}
    assert str(row["dec_col"]) == "1.00"


def test_batch_rows_respected(wh: Warehouse) -> None:
    batches = list(wh.stream('select * from "wh"."main"."typed"', batch_rows=700))
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == ROWS
    assert len(sizes) > 1
    assert max(sizes) <= 700


def test_empty_result_yields_one_empty_batch_with_schema(wh: Warehouse) -> None:
    batches = list(wh.stream("select int_col, dec_col from main.typed where false"))
    assert [b.num_rows for b in batches] == [0]
    assert batches[0].schema.names == ["int_col", "dec_col"]
    assert batches[0].schema.field("dec_col").type == pa.decimal128(12, 2)


def test_stream_never_calls_adapter_execute(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("adapter.execute must not carry sync payloads")

    monkeypatch.setattr(wh.adapter, "execute", boom)
    monkeypatch.setattr(wh.adapter.connections, "execute", boom)
    rows = sum(b.num_rows for b in wh.stream_relation("main.typed", ["int_col"], 2000))
    assert rows == ROWS


def test_bad_sql_is_a_warehouse_error(wh: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="Query failed"):
        list(wh.stream("select nope from main.typed"))
    # the connection still works afterwards
    assert sum(b.num_rows for b in wh.stream("select 1 as x")) == 1


def test_one_stream_at_a_time_and_abandoned_streams_are_finalised(wh: Warehouse) -> None:
    first = wh.stream("select * from main.typed", batch_rows=100)
    next(first)
    with pytest.raises(WarehouseError, match="still open"):
        wh.columns("wh", "main", "typed")
    first.close()  # type: ignore[attr-defined]
    assert wh.columns("wh", "main", "typed") is not None
    for _batch in wh.stream("select * from main.typed", batch_rows=100):
        break  # the dropped generator is finalised, releasing the connection
    assert wh.columns("wh", "main", "typed") is not None


def test_other_thread_is_refused(wh: Warehouse) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            list(wh.stream("select 1"))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert len(errors) == 1
    assert isinstance(errors[0], WarehouseError)


def test_close_with_unfinished_stream_releases_the_file(wh_project: Path) -> None:
    warehouse = open_warehouse(wh_project, profiles_dir=wh_project, target="dev")
    stream = warehouse.stream("select * from main.typed", batch_rows=100)
    next(stream)
    warehouse.close()
    warehouse.close()  # idempotent
    with pytest.raises(WarehouseError, match="closed"):
        warehouse.columns(None, "main", "typed")
    con = duckdb.connect(str(wh_project / "wh.duckdb"))  # read-write: the lock was released
    con.close()


def test_only_one_warehouse_at_a_time(wh: Warehouse, wh_project: Path) -> None:
    with pytest.raises(WarehouseError, match="already open"):
        open_warehouse(wh_project, profiles_dir=wh_project)


def test_target_and_vars(wh_project: Path) -> None:
    with open_warehouse(wh_project, profiles_dir=wh_project, target="other", vars={"x": 1}) as w:
        assert w.target_name == "other"
        assert w.database == "other"
        assert w.adapter.config.cli_vars == {"x": 1}
        assert w.columns(None, "main", "typed") is None


def test_dbt_env_vars_are_honoured(wh_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_PROFILES_DIR", str(wh_project))
    monkeypatch.setenv("DBT_TARGET", "other")
    with open_warehouse(wh_project) as w:
        assert w.target_name == "other"


def test_config_errors(wh_project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="profiles"):
        open_warehouse(wh_project, profiles_dir=empty)
    with pytest.raises(ConfigError, match="nope"):
        open_warehouse(wh_project, profiles_dir=wh_project, target="nope")
    with pytest.raises(ConfigError, match="nope"):
        open_warehouse(wh_project, profiles_dir=wh_project, profile="nope")
    with pytest.raises(ConfigError, match=r"dbt_project\.yml"):
        open_warehouse(empty, profiles_dir=wh_project)
    # nothing left open: a normal open still works
    with open_warehouse(wh_project, profiles_dir=wh_project) as w:
        assert w.columns(None, "main", "people") is not None


def test_dbt_logging_stays_off_stdout(wh_project: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Even with a stdout logger installed by an earlier dbt run, nothing reaches stdout."""
    from dbt_common.events.base_types import EventLevel
    from dbt_common.events.event_manager_client import get_event_manager
    from dbt_common.events.functions import get_stdout_config
    from dbt_common.events.logger import LineFormat

    manager = get_event_manager()
    manager.add_logger(get_stdout_config(LineFormat.PlainText, False, EventLevel.DEBUG, False))
    try:
        with open_warehouse(wh_project, profiles_dir=wh_project) as w:
            w.columns(None, "main", "typed")
            list(w.stream("select 1 as x"))
        out, err = capfd.readouterr()
        assert out == ""
        assert "Registered adapter" not in err
        assert get_event_manager() is manager  # restored on close
    finally:
        manager.loggers.pop()


def test_import_does_not_import_dbt() -> None:
    code = (
        "import sys, dbt_dinmo.warehouse\n"
        "bad = [m for m in sys.modules if m == 'dbt' or m.startswith(('dbt.', 'pyarrow'))]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_locked_duckdb_file(wh_project: Path) -> None:
    """Another process holding the file read-write gives a clear WarehouseError."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"con = duckdb.connect({str(wh_project / 'wh.duckdb')!r})\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseError, match="is dbt still running") as info:
            open_warehouse(wh_project, profiles_dir=wh_project)
        assert "wh.duckdb" in str(info.value)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # once the other process is gone, opening works again
    with open_warehouse(wh_project, profiles_dir=wh_project) as w:
        assert w.columns(None, "main", "people") is not None


# -- row-based backends (psycopg family, generic DB-API), with fake handles -------------------


class _FakeCursor:
    def __init__(self, handle: _FakeHandle, description: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]):
        self.handle = handle
        self._description = description
        self.rows = list(rows)
        self.executed: list[str] = []
        self.fetched = False
        self.closed = False
        self.itersize = 0

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        # like a psycopg2 named cursor: known only after the first fetch
        return self._description if (self.fetched or not self.handle.named_only) else None

    def execute(self, sql: str) -> None:
        self.executed.append(sql)

    def fetchmany(self, n: int) -> list[tuple[Any, ...]]:
        self.fetched = True
        out, self.rows = self.rows[:n], self.rows[n:]
        return out

    def close(self) -> None:
        self.closed = True


class _FakeHandle:
    named_only = False

    def __init__(self, description: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]):
        self.description = description
        self.rows = rows
        self.autocommit = False
        self.cursors: list[tuple[dict[str, Any], _FakeCursor]] = []
        self.rollbacks = 0

    def cursor(self, **kwargs: Any) -> _FakeCursor:
        cur = _FakeCursor(self, self.description, self.rows)
        self.cursors.append((kwargs, cur))
        return cur

    def rollback(self) -> None:
        self.rollbacks += 1


class _FakePsycopg2Handle(_FakeHandle):
    named_only = True


_FakePsycopg2Handle.__module__ = "psycopg2.extensions"


def _fake_warehouse(adapter_type: str, handle: _FakeHandle) -> Warehouse:
    from types import SimpleNamespace

    from dbt_dinmo._dbt_adapter import AdapterSession

    connection = SimpleNamespace(handle=handle)
    connections = SimpleNamespace(get_thread_connection=lambda: connection, rollback_if_open=lambda: None)
    adapter = SimpleNamespace(connections=connections, quote=lambda name: f'"{name}"')
    config = SimpleNamespace(
        credentials=SimpleNamespace(type=adapter_type, database="db"), target_name="t", profile_name="p"
    )
    return Warehouse(AdapterSession(config=config, adapter=adapter, restore_events=lambda: None))


def _pg_desc(name: str, oid: int, precision: int | None = None, scale: int | None = None) -> tuple[Any, ...]:
    return (name, oid, None, -1, precision, scale, None)


def test_postgres_path_uses_a_named_cursor_and_declared_types() -> None:
    import datetime as dt
    from decimal import Decimal

    paris = dt.timezone(dt.timedelta(hours=1))
    description = [
        _pg_desc("id", 23),
        _pg_desc("ltv", 1700, 12, 2),
        _pg_desc("avg", 1700, 65535, 65535),
        _pg_desc("seen_at", 1184),
        _pg_desc("meta", 3802),
        _pg_desc("tags", 1009),
        _pg_desc("late", 20),
    ]
    rows = [
        (
            i,
            Decimal("10.50") * i,
            Decimal(1) / Decimal(3) * i,
            dt.datetime(2024, 1, 1, 12, tzinfo=paris),
            {"tier": "gold"} if i % 2 else None,
            ["a", "b"],
            None if i < 5 else i,
        )
        for i in range(7)
    ]
    handle = _FakePsycopg2Handle(description, rows)
    wh = _fake_warehouse("postgres", handle)
    batches = list(wh.stream_relation('"db"."s"."t"', ["id", "ltv"], batch_rows=3))
    assert [b.num_rows for b in batches] == [3, 3, 1]
    assert len({b.schema for b in batches}) == 1
    kwargs, cursor = handle.cursors[0]
    assert kwargs["name"].startswith("dbt_dinmo_")
    assert kwargs["withhold"] is False
    assert cursor.executed == ['select "id", "ltv" from "db"."s"."t"']
    assert cursor.closed
    assert handle.rollbacks == 1
    table = pa.Table.from_batches(batches)
    schema = table.schema
    assert schema.field("ltv").type == pa.decimal128(12, 2)
    assert schema.field("avg").type == pa.decimal128(38, 16)
    assert schema.field("seen_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("meta").type == pa.string()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("late").type == pa.int64()
    row = table.slice(1, 1).to_pylist()[0]
    assert row["avg"] == Decimal("0.3333333333333333")  # rounded half-even to 16 places
    assert row["seen_at"] == dt.datetime(2024, 1, 1, 11, tzinfo=dt.timezone.utc)
    assert row["meta"] == '{"tier": "gold"}'
    assert table.column("late").to_pylist() == [None] * 5 + [5, 6]

    empty = list(_fake_warehouse("postgres", _FakePsycopg2Handle(description, [])).stream("select 1"))
    assert [b.num_rows for b in empty] == [0]
    assert empty[0].schema == schema


def test_generic_dbapi_path_infers_types_batch_by_batch() -> None:
    description = [("n", None, None, None, None, None, None), ("s", None, None, None, None, None, None)]
    rows = [(1, "a"), (2, None), (None, None), (None, None), (1.5, "b")]
    handle = _FakeHandle(description, rows)
    handle.__class__ = type("SnowflakeConnection", (_FakeHandle,), {"__module__": "snowflake.connector"})
    wh = _fake_warehouse("snowflake", handle)
    batches = list(wh.stream("select n, s from t", batch_rows=2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert batches[0].schema.field("n").type == pa.int64()
    assert batches[1].schema.field("n").type == pa.int64()  # all-null batch keeps the known type
    assert batches[2].schema.field("n").type == pa.float64()  # values that no longer fit widen it
    assert handle.cursors[0][1].closed


def test_handle_without_cursor_is_a_clear_error() -> None:
    class Client:
        pass

    wh = _fake_warehouse("bigquery", Client())  # type: ignore[arg-type]
    with pytest.raises(WarehouseError, match="not supported for the bigquery adapter"):
        list(wh.stream("select 1"))
