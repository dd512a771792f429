"""The `serve` web application: /metrics, the JSON API, its OpenAPI document and the
dashboard, for one fleet. `create_app` builds it around a `Service`; `run` serves it.

Errors: a FleetError becomes JSON `{"error": message}` with 400 for bad input, 404 for an
unknown VM or group, 409 when the fleet lock is held, 502 when a host fails; 401 (and nothing
runs) for a missing or wrong token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Cookie, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vmfleet.errors import FleetError, HypervisorError, LockedError, UsageError
from vmfleet.serve import api, auth, dashboard
from vmfleet.serve.service import Service

API_VERSION = "1"


def create_app(svc: Service, *, token: str, reads_need_token: bool) -> FastAPI:
    """The application; reads need the token only when `reads_need_token` (serve listens
    beyond loopback), actions always do."""

    def check(authorization: str | None, cookie: str | None) -> None:
        if not auth.valid(token, auth.presented(authorization, cookie)):
            raise HTTPException(
                status_code=401,
                detail="a valid token is needed (Authorization: Bearer TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def read(
        authorization: Annotated[str | None, Header()] = None,
        vmfleet_token: Annotated[str | None, Cookie()] = None,
    ) -> None:
        if reads_need_token:
            check(authorization, vmfleet_token)

    def act(
        authorization: Annotated[str | None, Header()] = None,
        vmfleet_token: Annotated[str | None, Cookie()] = None,
    ) -> None:
        check(authorization, vmfleet_token)

    app = FastAPI(
        title=f"vmfleet: fleet {svc.fleet}",
        version=API_VERSION,
        description="The fleet's VMs, hosts, groups, snapshots and events; actions that "
        "run the same code as the vmfleet CLI.",
        docs_url=None,  # Swagger UI loads from a CDN; the page must work offline
        redoc_url=None,
    )
    app.state.service = svc
    app.include_router(api.router(read=read, act=act))
    app.include_router(dashboard.router(read=read, act=act))
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")

    @app.get("/metrics", include_in_schema=False)
    def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
        if reads_need_token:
            check(authorization, None)
        return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(FleetError)
    def fleet_error(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=_status(error))

    @app.exception_handler(LookupError)
    def not_found(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": str(error.args[0]) if error.args else ""}, status_code=404)

    return app


def _status(error: Exception) -> int:
    if isinstance(error, LockedError):
        return 409
    if isinstance(error, UsageError):
        return 404 if str(error).startswith("no ") else 400
    if isinstance(error, HypervisorError):
        return 502
    return 400 if getattr(error, "exit_code", 1) == 2 else 500


def run(application: FastAPI, *, host: str, port: int) -> None:
    """Serve until Ctrl-C or SIGTERM; open event streams get two seconds to end."""
    import uvicorn

    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
