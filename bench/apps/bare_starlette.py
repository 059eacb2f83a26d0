"""The peer for the warm-HTTP benchmark: the same echo handler in-process in bare Starlette.

Served by uvicorn --loop uvloop --http httptools, 1 worker, no access log.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
