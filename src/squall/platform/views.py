"""What `squall apps`, `squall versions` and the history show: read-only views of the
registry and of what runs on this node (a mixin of squall.platform.service.Platform)."""

from __future__ import annotations

import time
from typing import Any

from ..backends.registry import Registry, VersionRecord
from .traffic import format_weights

NODE_STALE_S = 30.0  # a node that has not reported for this long is not listed


class PlatformViews:
    registry: Registry
    hosts: dict[str, Any]
    quotas: Any
    _require_app: Any

    def version_info(self, v: VersionRecord) -> dict[str, Any]:
        functions = [f["name"] for f in v.manifest.get("functions", [])]
        return {"app": v.app, "version": v.version, "sha256": v.sha256,
                "package_bytes": v.size_bytes, "unpacked_bytes": v.unpacked_bytes,
                "venv": v.venv_key, "venv_bytes": v.venv_bytes, "import_ms": v.import_ms,
                "venv_build_ms": v.build_ms, "created_at": v.created_at,
                "description": v.description, "functions": functions}

    def versions(self, app: str) -> list[dict[str, Any]]:
        self._require_app(app)
        aliases = self.registry.aliases(app)
        out = []
        for v in self.registry.versions(app):
            info = self.version_info(v)
            info["aliases"] = {a.name: a.weights[v.version] for a in aliases
                               if v.version in a.weights}
            out.append(info)
        return out

    def node_state(self) -> dict[str, Any]:
        """What runs here, per app: for `squall apps` on any node."""
        return {name: {"inflight": host.inflight,
                       "running": [v.state() for v in host.versions.values()]}
                for name, host in self.hosts.items()}

    def apps(self) -> list[dict[str, Any]]:
        nodes = self.registry.nodes(NODE_STALE_S)
        out = []
        for app in self.registry.apps():
            host = self.hosts.get(app.name)
            aliases = {}
            for a in self.registry.aliases(app.name):
                monitor = host.monitor(a.name) if host else None
                aliases[a.name] = {
                    "weights": format_weights(a.weights), "provisioned": a.provisioned,
                    "canary": a.canary and {**a.canary, **({
                        "requests": monitor.requests, "errors": monitor.errors}
                        if monitor else {})}}
            out.append({
                "name": app.name, "versions": app.next_version - 1, "aliases": aliases,
                "quotas": self.quotas(app.name).to_dict(),
                "grants": self.registry.grants(app.name),
                "storage_bytes": host.storage.used_bytes if host else 0,
                "node": {"inflight": host.inflight if host else 0,
                         "running": [v.state() for v in host.versions.values()]
                         if host else []},
                "nodes": {n.node: {"seen_s_ago": round(time.time() - n.at, 1),
                                   **n.apps.get(app.name, {"inflight": 0, "running": []})}
                          for n in nodes}})
        return out

    def history(self, app: str, limit: int = 50) -> list[dict[str, Any]]:
        self._require_app(app)
        return [{"at": h.at, "action": h.action, **h.detail}
                for h in self.registry.history(app, limit)]
