"""The multi-user parent: an endpoint agent (registration, the endpoint's
task stream, results, heartbeats: endpoint.agent) whose tasks go to a
:class:`endpoint.multiuser.router.Router` instead of an interchange, so the
parent itself never runs user code and holds the only Redis credentials:
children talk only to their own interchange, over loopback CurveZMQ with
their own keys.

Why route at the parent rather than give each child a stream of its own: a
child runs as the user, and anything it holds — a Redis password, a token —
the user's code can read.  Per-user streams would need a Redis ACL user per
(endpoint, identity), created by the service and handed to a process that
runs untrusted code; here a child holds only a CurveZMQ key that opens its
own interchange, and a task reaches a child only after the parent mapped its
service-written identity to that child's account.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from endpoint.agent import Agent
from endpoint.config import Config
from endpoint.multiuser.router import Router
from endpoint.multiuser.site_config import SiteConfig
from funcx.sdk.web_client import WebClient

log = logging.getLogger("funcx.multiuser")
#: children's logs, under the endpoint directory
CHILD_LOG_DIR = "children"


class MultiUserAgent(Agent):
    """An agent whose "interchange" is a :class:`Router` of per-user children."""

    def __init__(self, name: str, config: Config, web: WebClient, run_dir: Path,
                 endpoint_id: str | None, info: dict, site: SiteConfig):
        self.site = site
        if os.geteuid() != 0:
            log.warning("the multi-user endpoint %s runs as uid %d, not root: it can only "
                        "start children as its own account", name, os.geteuid())
        super().__init__(name, config, web, run_dir, endpoint_id, info)
        self.router.endpoint_id = self.endpoint_id

    @property
    def router(self) -> Router:
        return self.interchange  # type: ignore[return-value]

    def _make_interchange(self, config: Config, run_dir: Path) -> Router:  # type: ignore[override]
        return Router(self.site, self.out.put, run_dir, self.site.directory / CHILD_LOG_DIR,
                      config.heartbeat_period, config.heartbeat_threshold,
                      config.task_retries_on_manager_lost, max_inflight=config.max_inflight)

    def registration_metadata(self) -> dict:
        return self.site.published()
