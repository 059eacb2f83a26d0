"""Platform mode: `squall server` hosts many apps, each as immutable versions (docs/platform.md).

    cli/platform.py ──HTTP──> control.py (PlatformGateway: /_platform/ API, /NAME/ routes)
                                  │
                              service.py (Platform: deploy, aliases, rollback, grants,
                               │         │              │           reconcile, sync)
                         build.py     hosts.py       backends/registry (SQLite, or
                   (package.py,     (AppHost -> VersionHost ->     PostgreSQL for a
                    venvs.py)        squall.stack.AppStack per     cluster; namespaces.py
                                     live version; quotas.py,      puts each app's data
                                     traffic.py)                   in its own schema)
"""
