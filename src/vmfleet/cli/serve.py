"""`vmfleet serve`: metrics, the REST API and the dashboard for one fleet over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmfleet.cli.common import FleetFile, StateOpt, app, load_fleet
from vmfleet.cli.output import err_console
from vmfleet.errors import UsageError

DEFAULT_LISTEN = "127.0.0.1:9177"
LOCK_WAIT = 30.0  # seconds an action waits for a CLI run's fleet lock


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9177` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT such as {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


@app.command()
def serve(
    file: FleetFile,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on.")
    ] = DEFAULT_LISTEN,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the API token (else $VMFLEET_TOKEN, else STATE/serve-token, "
            "made on first use).",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between looks for changes.")
    ] = 5.0,
    state: StateOpt = None,
) -> None:
    """Serve /metrics (Prometheus), the JSON API under /api/v1 (OpenAPI at /openapi.json)
    and the dashboard at /. Reads need the token only beyond 127.0.0.1; actions always."""
    from vmfleet.serve import app as web  # the web stack loads only for this command
    from vmfleet.serve import auth
    from vmfleet.serve.service import ServedFleet, Service

    host, port = parse_listen(listen)
    fleet = ServedFleet(load_fleet(file), state=state, lock_wait=LOCK_WAIT)
    with fleet:
        token, source = auth.load_token(token_file=token_file, state_dir=fleet.state_dir)
        svc = Service(fleet)
        svc.start(interval=interval)
        local = auth.is_loopback(host)
        application = web.create_app(svc, token=token, reads_need_token=not local)
        shown = f"[{host}]" if ":" in host else host
        err_console.print(
            f"serving fleet {fleet.name} on http://{shown}:{port}/ (token: {source}; "
            + (
                "reads are open on loopback, actions need the token)"
                if local
                else "every request needs the token)"
            ),
            highlight=False,
        )
        try:
            web.run(application, host=host, port=port)
        finally:
            svc.stop()
