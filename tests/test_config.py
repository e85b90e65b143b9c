from __future__ import annotations

from pathlib import Path

import pytest

from dbt_dinmo.config import Secret, check_rest_url, load_config
from dbt_dinmo.errors import ConfigError

GOOD = """
destinations:
  braze:
    type: braze
    label: "Braze"
    rest_url: "{{ env_var('BRAZE_REST_URL') }}"
    dashboard_url: https://dashboard-01.braze.eu/
    api_key: "{{ env_var('BRAZE_API_KEY') }}"
    batch_rule: 50_combined
state:
  path: "{{ env_var('STATE_DIR', 'custom_state') }}"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "dinmo.yml").write_text(text)
    return tmp_path


def test_renders_env_vars_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, GOOD),
        env={"BRAZE_REST_URL": "https://rest.fra-01.braze.eu", "BRAZE_API_KEY": "k-123"},
    )
    dest = cfg.destinations["braze"]
    assert dest.rest_url == "https://rest.fra-01.braze.eu"
    assert dest.api_key.reveal() == "k-123"
    assert dest.batch_rule == "50_combined"
    assert dest.dashboard_url == "https://dashboard-01.braze.eu"
    assert cfg.state_path == (tmp_path / "custom_state").resolve()
    assert cfg.problems["braze"] == []
    assert "k-123" not in repr(dest) and "k-123" not in str(dest.api_key)


def test_missing_api_key_variable_is_a_problem_naming_it(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={"BRAZE_REST_URL": "https://rest.fra-01.braze.eu"})
    [problem] = cfg.problems["braze"]
    assert problem.key == "destinations.braze.api_key"
    assert "BRAZE_API_KEY" in problem.message and "export BRAZE_API_KEY" in problem.fix


def test_literal_api_key_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("\"{{ env_var('BRAZE_API_KEY') }}\"", "abc-literal-key")
    cfg = load_config(write(tmp_path, text), env={"BRAZE_REST_URL": "https://rest.fra-01.braze.eu"})
    assert any("environment variable" in p.message for p in cfg.problems["braze"])
    assert all("abc-literal-key" not in str(p) for p in cfg.problems["braze"])


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://rest.fra-01.braze.eu", True),
        ("http://127.0.0.1:4010", True),
        ("http://localhost:4010", True),
        ("http://[::1]:4010", True),
        ("http://rest.fra-01.braze.eu", False),
        ("https://rest.fra-01.braze.eu/", False),
        ("rest.fra-01.braze.eu", False),
        ("", False),
    ],
)
def test_rest_url_rules(url: str, ok: bool) -> None:
    assert (check_rest_url(url) is None) is ok


def test_bad_batch_rule_and_unknown_keys(tmp_path: Path) -> None:
    text = GOOD.replace("50_combined", "100_per_array").replace("label:", "lable:")
    cfg = load_config(
        write(tmp_path, text), env={"BRAZE_REST_URL": "https://x.braze.eu", "BRAZE_API_KEY": "k"}
    )
    keys = {p.key for p in cfg.problems["braze"]}
    assert {"destinations.braze.batch_rule", "destinations.braze.lable"} <= keys


def test_missing_file_has_a_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dinmo\.yml"):
        load_config(tmp_path)


def test_secret_never_shows() -> None:
    s = Secret("supersecret")
    assert "supersecret" not in f"{s} {s!r} {[s]}"
