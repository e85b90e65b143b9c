"""dbt imports every ``dbt_*`` module on every command: importing ours must stay cheap."""

from __future__ import annotations

import subprocess
import sys


def test_package_import_is_light() -> None:
    code = (
        "import sys, dbt_dinmo; "
        "bad = [m for m in ('textual', 'httpx', 'rich', 'dbt', 'duckdb', 'pyarrow', 'aiohttp') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_does_not_load_dbt_or_textual() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from dbt_dinmo.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
        "print(','.join(m for m in ('dbt', 'textual', 'duckdb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_warehouse_module_imports_dbt_lazily() -> None:
    code = "import sys, dbt_dinmo.warehouse; print('dbt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_macros_path_points_at_the_dinmo_package() -> None:
    from pathlib import Path

    import yaml
    from click.testing import CliRunner

    from dbt_dinmo.cli import main

    result = CliRunner().invoke(main, ["macros-path"])
    assert result.exit_code == 0
    path = Path(result.output.strip())
    project = yaml.safe_load((path / "dbt_project.yml").read_text())
    assert project["name"] == "dinmo"
    assert (path / "macros").is_dir() and any((path / "macros").rglob("*.sql"))
