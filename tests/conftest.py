"""Shared fixtures: a built copy of the sample project, the emulator, and a CLI driver."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_project"
BIN = Path(sys.executable).parent
IGNORE = shutil.ignore_patterns(
    "target", "logs", ".dinmo", "*.duckdb", "*.duckdb.wal", "dbt_packages", ".user.yml"
)


def dbt(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run dbt in a project (cwd = project, like a user)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    return subprocess.run(
        [str(BIN / "dbt"), *args, "--profiles-dir", "."],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=check,
    )


def install_packages(project: Path) -> None:
    """Point a copied project's ``local: ..`` package at this repository, then ``dbt deps``."""
    packages = project / "packages.yml"
    if packages.exists():
        packages.write_text(packages.read_text().replace("local: ..", f"local: {ROOT}"))
        result = dbt(project, "deps", check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample project, copied and built once per session."""
    dst = tmp_path_factory.mktemp("built") / "sample_project"
    shutil.copytree(SAMPLE, dst, ignore=IGNORE)
    install_packages(dst)
    result = dbt(dst, "build", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return dst


@pytest.fixture
def project(built_sample: Path, tmp_path: Path) -> Path:
    """A private copy of the built sample project (its own DuckDB file and state)."""
    dst = tmp_path / "sample_project"
    shutil.copytree(built_sample, dst, symlinks=True, ignore=shutil.ignore_patterns(".dinmo", "logs"))
    return dst


@pytest.fixture
def api_key() -> str:
    """A fresh secret per test, so the secrets test can grep for it."""
    return "test-key-" + secrets.token_hex(16)


@pytest.fixture
def emulator(api_key: str) -> Iterator[object]:
    """A real Braze emulator on a loopback port."""
    from dbt_dinmo.emulator import EmulatorServer, EmulatorSettings

    with EmulatorServer(EmulatorSettings(api_keys={api_key: None}), host="127.0.0.1", port=0) as emu:
        yield emu


@dataclass
class Cli:
    """Runs the real ``dbt-dinmo`` console script against a project and an emulator."""

    project: Path
    url: str
    api_key: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "BRAZE_"))}
        env.update(BRAZE_REST_URL=self.url, BRAZE_API_KEY=self.api_key, NO_COLOR="1", COLUMNS="200")
        env.update(extra)
        return env

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "dbt-dinmo"), *args, "--profiles-dir", "."],
            cwd=self.project,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "dbt-dinmo"), *args, "--profiles-dir", "."],
            cwd=self.project,
            env=env or self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(project: Path, emulator: object, api_key: str) -> Cli:
    """The CLI bound to this test's project copy and emulator."""
    return Cli(project, emulator.url, api_key)  # type: ignore[attr-defined]


def workspace(url: str) -> dict:
    """The emulator's inspectable workspace."""
    return httpx.get(f"{url}/_emulator/workspace", timeout=10).json()


MINI_PROJECT = {
    "dbt_project.yml": "name: mini\nversion: '1.0.0'\nconfig-version: 2\nprofile: mini\nmodels:\n  mini:\n    +materialized: table\n",
    "profiles.yml": "mini:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: mini.duckdb\n      threads: 1\n",
    "models/users.sql": (
        "select 'u' || lpad(cast(i as varchar), 6, '0') as user_id, 'name ' || i as name, i % 97 as score "
        "from range({rows}) t(i)\n"
    ),
    "models/exposures.yml": (
        "version: 2\nexposures:\n  - name: big_sync\n    type: application\n    owner: {{name: t, email: t@example.com}}\n"
        "    depends_on: [ref('users')]\n    config:\n      meta:\n        dinmo:\n          destination: braze\n"
        "          service: user_attributes\n          sync_mode: upsert\n          identifier: {{column: user_id}}\n"
        "          mapping: {{name: name, score: score}}\n"
    ),
    "dinmo.yml": (
        "destinations:\n  braze:\n    type: braze\n    rest_url: \"{{{{ env_var('BRAZE_REST_URL') }}}}\"\n"
        "    dashboard_url: https://dashboard-01.braze.eu\n    api_key: \"{{{{ env_var('BRAZE_API_KEY') }}}}\"\n"
        "    max_in_flight: {in_flight}\n"
    ),
}


def make_mini_project(root: Path, rows: int, in_flight: int = 2) -> Path:
    """A generated dbt-duckdb project with one upsert activation over ``rows`` users."""
    for name, text in MINI_PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(rows=rows, in_flight=in_flight))
    result = dbt(root, "build", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return root
