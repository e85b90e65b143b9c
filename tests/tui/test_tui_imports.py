"""Import hygiene: Textual loads only when the dashboard opens, and tui/ works under any name."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

TUI = ROOT / "tui"


def run_python(code: str, cwd: Path | None = None) -> str:
    """Run code in a fresh interpreter; return its stdout."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def test_core_and_catalog_never_import_textual() -> None:
    code = "import sys, dbt_dinmo, dbt_dinmo.catalog, tui; print('textual' in sys.modules)"
    assert run_python(code) == "False"


def test_dbt_dinmo_ls_leaves_textual_out(built_sample: Path) -> None:
    code = (
        "import sys; from click.testing import CliRunner; from dbt_dinmo.cli import main; "
        f"r = CliRunner().invoke(main, ['ls', '--project-dir', {str(built_sample)!r}, '--profiles-dir', "
        f"{str(built_sample)!r}]); assert r.exit_code == 0, r.output; assert 'braze_vip_flags' in r.output; "
        "print('textual' in sys.modules)"
    )
    assert run_python(code, cwd=built_sample) == "False"


def test_the_cli_finds_run_tui() -> None:
    code = (
        "import sys; from dbt_dinmo.cli import load_tui; m = load_tui(); "
        "print(callable(m.run_tui), 'textual' in sys.modules)"
    )
    assert run_python(code) == "True False"


def test_imports_inside_tui_are_relative() -> None:
    """In a wheel the package is dbt_dinmo.tui: an absolute `import tui` would break there."""
    for path in TUI.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module is not None and node.module.split(".")[0] != "tui", path
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "tui" for a in node.names), path


def test_the_package_works_under_its_wheel_name(tmp_path: Path) -> None:
    """Copied as <pkg>/tui (like dbt_dinmo/tui in the wheel), every module imports."""
    pkg = tmp_path / "shipped"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copytree(TUI, pkg / "tui", ignore=shutil.ignore_patterns("__pycache__"))
    modules = sorted(
        "shipped.tui." + ".".join(p.relative_to(TUI).with_suffix("").parts).removesuffix(".__init__")
        for p in TUI.rglob("*.py")
    )
    code = (
        "import importlib, sys; "
        f"sys.path.insert(0, {str(tmp_path)!r}); "
        f"[importlib.import_module(m.removesuffix('.__init__')) for m in {modules!r}]; "
        "import shipped.tui.app as a; print(a.__file__.startswith(" + repr(str(tmp_path)) + "))"
    )
    assert run_python(code, cwd=tmp_path) == "True"
