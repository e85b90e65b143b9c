"""dbt-dinmo's terminal dashboard (Textual), opened by ``dbt-dinmo tui``.

Shipped in the wheel as ``dbt_dinmo.tui``; every import inside this package is relative, and
Textual is imported only when the dashboard starts, so the CLI's other commands never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbt_dinmo.project import Project

__all__ = ["run_tui"]


def run_tui(project: Project) -> None:
    """Open the dashboard on a project and block until the user quits."""
    from dbt_dinmo.catalog import Catalog

    from .app import DinmoApp
    from .logs import route_logs_to

    app = DinmoApp(Catalog(project))
    with route_logs_to(app):
        app.run()
