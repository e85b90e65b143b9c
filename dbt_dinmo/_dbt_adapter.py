"""Open the user's dbt profile/target adapter in-process (dbt-core 1.8-1.12).

Private helper of :mod:`dbt_dinmo.warehouse`. Every dbt import happens inside a function, so
importing this module does not import dbt. The steps mirror dbt's own CLI decorators
(``dbt/cli/requires.py``): flags, invocation context, profile, project, runtime config,
adapter, macros. dbt's event logging is routed away from stdout (see :func:`quiet_dbt_events`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_dinmo.errors import ConfigError, Problem, WarehouseError

log = logging.getLogger("dbt_dinmo.dbt")

_PROFILE_FIX = (
    "Check the profile named in dbt_project.yml (or --profile / DBT_PROFILE), the target "
    "(--target / DBT_TARGET) and where profiles.yml is (--profiles-dir / DBT_PROFILES_DIR, "
    "else ./profiles.yml, else ~/.dbt/profiles.yml); `dbt debug` shows the same problem."
)


def _module(name: str) -> Any:
    """Import a dbt module untyped (its signatures differ across dbt versions)."""
    return importlib.import_module(name)


@dataclass
class AdapterSession:
    """What :func:`open_adapter` returns: the runtime config, the adapter and an undo hook."""

    config: Any  # dbt.config.RuntimeConfig
    adapter: Any  # dbt.adapters.base.BaseAdapter subclass
    restore_events: Callable[[], None]
    macros_loaded: bool = False

    def ensure_macros(self) -> None:
        """Load the project's macros once (metadata calls such as get_relation need them)."""
        if self.macros_loaded:
            return
        try:
            _set_macros(self.config, self.adapter)
        except Exception as exc:
            if _is_dbt_error(exc):
                raise ConfigError(
                    Problem(
                        "dbt project",
                        "macros",
                        _clean(exc),
                        "Run `dbt deps` and `dbt parse` and fix what they report.",
                    )
                ) from exc
            raise
        self.macros_loaded = True


def _forward_event(msg: Any) -> None:
    """Send a dbt event to Python logging at DEBUG, never to stdout."""
    try:
        info = msg.info
        log.debug("dbt %s %s: %s", info.level, info.name, info.msg)
    except Exception:  # pragma: no cover - defensive: logging must never break a query
        pass


def quiet_dbt_events() -> Callable[[], None]:
    """Install a dbt event manager without stdout/file loggers; return a function undoing it.

    dbt fires every message (``Registered adapter``, connection and SQL debug lines,
    deprecation warnings) through a process-wide event manager. A fresh manager with no
    loggers and a callback to the ``dbt_dinmo.dbt`` Python logger (DEBUG level) keeps the
    tool's stdout clean, whatever an earlier in-process dbt invocation set up.
    """
    from dbt_common.events import event_manager_client as emc
    from dbt_common.events.event_manager import EventManager

    setter = getattr(emc, "ctx_set_event_manager", None)
    if setter is None:  # pragma: no cover - very old dbt-common: strip loggers in place
        manager = emc.get_event_manager()
        saved_loggers, saved_callbacks = list(manager.loggers), list(manager.callbacks)
        manager.loggers.clear()
        manager.callbacks[:] = [_forward_event]

        def restore_in_place() -> None:
            manager.loggers[:] = saved_loggers
            manager.callbacks[:] = saved_callbacks

        return restore_in_place

    previous = emc.get_event_manager()
    quiet = EventManager()
    quiet.callbacks.append(_forward_event)
    setter(quiet)

    def restore() -> None:
        if emc.get_event_manager() is quiet:
            setter(previous)

    return restore


@contextlib.contextmanager
def _no_dotenv() -> Iterator[None]:
    """Stop ``import dbt.cli.main`` from loading ``.env`` files into ``os.environ``.

    dbt-core 1.12 calls ``load_dotenv(find_dotenv(usecwd=True))`` when ``dbt.cli.main`` is
    imported; 1.8-1.11 do not. ``args_to_context`` needs dbt's click command tree, which lives
    in ``dbt.cli.main``, so the import is made with ``load_dotenv`` replaced by a no-op and the
    real function is put back afterwards (dbt's own ``dbtRunner`` keeps its behaviour).
    """
    if "dbt.cli.main" in sys.modules:
        yield
        return
    try:
        dotenv = _module("dotenv")
    except ImportError:
        yield
        return
    original = dotenv.load_dotenv

    def _skip(*_args: Any, **_kwargs: Any) -> bool:
        return False

    dotenv.load_dotenv = _skip
    try:
        yield
    finally:
        dotenv.load_dotenv = original
        main: Any = sys.modules.get("dbt.cli.main")
        if main is not None and getattr(main, "load_dotenv", None) is _skip:
            main.load_dotenv = original


def _vars_arg(vars: str | Mapping[str, Any] | None) -> str | None:
    if vars is None:
        return None
    if isinstance(vars, str):
        return vars
    return json.dumps(dict(vars), default=str)


def build_argv(
    project_dir: str | Path,
    profiles_dir: str | Path | None,
    profile: str | None,
    target: str | None,
    vars: str | Mapping[str, Any] | None,
) -> list[str]:
    """The dbt argument list whose flags (and ``DBT_*`` env vars) describe the connection."""
    argv = ["run-operation", "dbt_dinmo_noop", "--project-dir", str(project_dir)]
    if profiles_dir is not None:
        argv += ["--profiles-dir", str(profiles_dir)]
    if profile:
        argv += ["--profile", profile]
    if target:
        argv += ["--target", target]
    vars_text = _vars_arg(vars)
    if vars_text:
        argv += ["--vars", vars_text]
    return argv


def _clean(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for prefix in ("Runtime Error ", "Compilation Error ", "Parsing Error "):
        text = text.removeprefix(prefix)
    return text or exc.__class__.__name__


def _flags_error(exc: BaseException) -> ConfigError:
    message = _clean(exc)
    if "--vars" in message or "YAML" in message:
        fix = "Pass --vars as a YAML or JSON mapping, e.g. --vars '{key: value}'."
    else:
        fix = "Check the dbt options given and the DBT_* environment variables."
    return ConfigError(Problem("dbt options", "flags", message, fix))


def _profile_error(exc: BaseException, flags: Any) -> ConfigError:
    message = _clean(exc)
    profiles_dir = Path(str(getattr(flags, "PROFILES_DIR", "") or ".")).resolve()
    profiles_yml = profiles_dir / "profiles.yml"
    if not profiles_yml.is_file():
        return ConfigError(
            Problem(
                "dbt profile",
                "profiles.yml",
                f"no profiles.yml in {profiles_dir} ({message})",
                "Pass --profiles-dir (or set DBT_PROFILES_DIR) to the folder holding "
                "profiles.yml; without it dbt looks in the current directory, then ~/.dbt/.",
            )
        )
    if "does not have a target named" in message:
        fix = "Pass one of the valid targets with --target (or DBT_TARGET), or add it to "
        fix += f"{profiles_yml}."
    elif "Could not find profile named" in message:
        fix = f"Add the profile to {profiles_yml}, or name another one with --profile "
        fix += "(DBT_PROFILE) or `profile:` in dbt_project.yml."
    elif match := re.search(r"Could not find adapter type (\S+?)!", message):
        fix = f"Install the dbt adapter for this target, e.g. `pip install dbt-{match.group(1)}`."
    elif "Env var required" in message:
        fix = "Export the environment variable that profiles.yml reads with env_var()."
    else:
        fix = _PROFILE_FIX
    return ConfigError(Problem("dbt profile", str(profiles_yml), message, fix))


def _is_dbt_error(exc: BaseException) -> bool:
    from dbt_common.exceptions import DbtBaseException

    return isinstance(exc, DbtBaseException)


def _build_flags(argv: list[str]) -> Any:
    from dbt.cli.flags import Flags, args_to_context

    try:
        with _no_dotenv():
            ctx = args_to_context(argv)
        flags = Flags(ctx)
    except Exception as exc:  # click usage errors, dbt project flag errors
        if _is_dbt_error(exc) or exc.__class__.__module__.startswith("click"):
            raise _flags_error(exc) from exc
        raise
    _module("dbt.flags").set_flags(flags)
    return flags


def _set_invocation_context() -> None:
    from dbt_common.context import set_invocation_context

    try:
        from dbt_common.clients.system import get_env

        env: Mapping[str, str] = get_env()
    except ImportError:  # pragma: no cover - older dbt-common
        env = dict(os.environ)
    set_invocation_context(dict(env))


def _load_config(flags: Any) -> Any:
    from dbt.config.runtime import RuntimeConfig, load_profile, load_project

    project_dir = str(flags.PROJECT_DIR)
    if not (Path(project_dir) / "dbt_project.yml").is_file():
        raise ConfigError(
            Problem(
                "dbt project",
                "project_dir",
                f"no dbt_project.yml in {project_dir}",
                "Run from the dbt project directory or pass --project-dir (DBT_PROJECT_DIR).",
            )
        )
    try:
        profile = load_profile(
            project_dir, flags.VARS, flags.PROFILE, flags.TARGET, getattr(flags, "THREADS", None)
        )
    except Exception as exc:
        if _is_dbt_error(exc):
            raise _profile_error(exc, flags) from exc
        raise
    with contextlib.suppress(Exception):
        from dbt_common.context import get_invocation_context

        get_invocation_context().uses_adapter(profile.credentials.type)
    try:
        project = load_project(project_dir, flags.VERSION_CHECK, profile, flags.VARS)
        return RuntimeConfig.from_parts(project, profile, flags)
    except Exception as exc:
        if _is_dbt_error(exc):
            raise ConfigError(
                Problem(
                    "dbt project",
                    "dbt_project.yml",
                    _clean(exc),
                    "Fix dbt_project.yml (or --vars); `dbt parse` shows the same problem.",
                )
            ) from exc
        raise


def _register(config: Any) -> Any:
    from dbt.mp_context import get_mp_context

    factory = _module("dbt.adapters.factory")

    adapter_type = str(config.credentials.type)
    # The factory keeps one adapter per type and ignores a second registration; drop any
    # adapter left by an earlier in-process dbt invocation so this config is the one used.
    factory.reset_adapters()
    try:
        factory.register_adapter(config, get_mp_context())
    except Exception as exc:
        if _is_dbt_error(exc):
            raise ConfigError(
                Problem(
                    "dbt profile",
                    "type",
                    f"the dbt adapter for {adapter_type!r} could not be loaded: " + _clean(exc),
                    f"Install it next to dbt-dinmo, e.g. `pip install dbt-{adapter_type}`.",
                )
            ) from exc
        raise
    return factory.get_adapter(config)


def _set_macros(config: Any, adapter: Any) -> None:
    """Give the adapter dbt's macros so get_relation / get_columns_in_relation work."""
    from dbt.context.providers import generate_runtime_macro_context
    from dbt.parser.manifest import ManifestLoader

    macro_manifest = ManifestLoader.load_macros(config, adapter.connections.set_query_header)
    adapter.set_macro_resolver(macro_manifest)
    adapter.set_macro_context_generator(generate_runtime_macro_context)
    with contextlib.suppress(ImportError):
        from dbt.context.query_header import generate_query_header_context

        adapter.connections.set_query_header(generate_query_header_context(config, macro_manifest))


def open_adapter(
    project_dir: str | Path,
    *,
    profiles_dir: str | Path | None = None,
    profile: str | None = None,
    target: str | None = None,
    vars: str | Mapping[str, Any] | None = None,
) -> AdapterSession:
    """Build flags, runtime config and adapter for the user's profile/target."""
    try:
        import dbt.version  # noqa: F401
    except ImportError as exc:
        raise WarehouseError(
            "dbt-core is not installed: install dbt-core 1.8-1.11 and your adapter "
            "(e.g. `pip install dbt-duckdb`) to query the warehouse."
        ) from exc

    restore = quiet_dbt_events()
    try:
        flags = _build_flags(build_argv(project_dir, profiles_dir, profile, target, vars))
        _set_invocation_context()
        config = _load_config(flags)
        adapter = _register(config)
    except BaseException:
        reset_dbt_adapters()
        restore()
        raise
    return AdapterSession(config=config, adapter=adapter, restore_events=restore)


def reset_dbt_adapters() -> None:
    """Close every dbt connection and forget the registered adapters."""
    with contextlib.suppress(ImportError):
        factory = _module("dbt.adapters.factory")
        factory.cleanup_connections()
        factory.reset_adapters()
