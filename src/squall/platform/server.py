"""`squall server`: the platform process. uvicorn serves `PlatformGateway`; each live app
version runs its own stack (zygote on the version's interpreter, workers, consumers)
under this one asyncio supervisor.

The admin token comes from $SQUALL_ADMIN_TOKEN, or a file only its owner can read
(mode 0600: a token others can read is refused), or is generated into
DATA_DIR/admin-token (0600) on first start.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from pathlib import Path

from ..observe import logs
from ..server import Serving
from .control import PlatformGateway, control_app
from .service import Platform, PlatformOptions

TOKEN_ENV = "SQUALL_ADMIN_TOKEN"
TOKEN_FILE = "admin-token"
MIN_TOKEN_CHARS = 16


class TokenError(ValueError):
    """The admin token is missing, too short or readable by others; says what to do."""


def read_token_file(path: str | Path) -> str:
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read the admin token file {p}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"the admin token file {p} is readable by others (mode "
                         f"{stat.S_IMODE(mode):04o}): chmod 600 {p}")
    return check_token(text, str(p))


def check_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"the admin token from {where} is shorter than {MIN_TOKEN_CHARS} "
                         "characters")
    return token


def server_token(data_dir: str | Path, token_file: str | None = None) -> str:
    """The token the server checks (see the module docstring for the order)."""
    if token_file is not None:
        return read_token_file(token_file)
    env = os.environ.get(TOKEN_ENV)
    if env:
        return check_token(env, f"${TOKEN_ENV}")
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        return read_token_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    logs.event("generated an admin token", path=str(path.resolve()))
    return token


class PlatformServer(Serving):
    def __init__(self, opts: PlatformOptions, token: str, *, host: str = "127.0.0.1",
                 port: int = 8080) -> None:
        self.opts = opts
        self.token = token
        self.host = host
        self.port = port
        self.started = asyncio.Event()
        self.platform: Platform | None = None

    async def run(self) -> None:
        platform = self.platform = Platform(self.opts)
        try:
            await platform.start()
        except BaseException:
            await platform.stop()
            raise
        gateway = PlatformGateway(platform, control_app(platform, self.token,
                                                        self.opts.max_package_bytes))
        try:
            await self.serve_until_stopped(gateway, self.host, self.port)
        finally:
            await platform.stop()
            logs.event("platform stopped")

    def announce(self) -> None:
        assert self.platform is not None
        logs.event("platform listening", url=f"http://{self.host}:{self.port}",
                   control=f"http://{self.host}:{self.port}/_platform/",
                   apps=sorted(self.platform.hosts), data_dir=str(self.platform.root),
                   pid=os.getpid())


def run(opts: PlatformOptions, token: str, host: str, port: int,
        log_level: str = "info") -> None:
    import uvloop

    logs.setup(log_level)
    uvloop.run(PlatformServer(opts, token, host=host, port=port).run())
