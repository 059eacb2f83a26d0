"""The web dashboard, served by `squall dev` and `squall run` at `/_squall/`.

    browser  --GET /_squall/-->  index.html + assets (one page, vanilla JS, no build step)
             --GET /_squall/api/dashboard/...-->  JSON, polled while the tab is visible
                                                  (api.py -> squall.ops -> the backends)

The pages read through `squall.ops`, the functions the CLI calls (`squall dlq`,
`squall schedules`, `squall workflows`, `squall replay`), and through squall.observe for
traces, alerts and costs, so what the dashboard shows is what the terminal shows. It is a
Starlette app mounted by the gateway's admin app; the hot path never sees it.
"""

from __future__ import annotations

from .app import dashboard_app
from .settings import DashboardSettings

__all__ = ["DashboardSettings", "dashboard_app"]
