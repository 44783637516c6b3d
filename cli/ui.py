"""`gapstream ui`: serve the web page against the configured broker, Redis and image store.

On embedded defaults (no GAPSTREAM_KAFKA_BOOTSTRAP) it starts what `gapstream run` starts, the embedded broker,
Redis and every stage, in this process, so one command gives a working page. Against a deployment it is one more
client of the topics and runs no stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import Any, Optional

import click

from cli.common import CliError, running_broker, running_redis
from infra.settings import Settings

UI_MODULES = ("starlette", "jinja2", "uvicorn", "sse_starlette", "multipart")


def require_ui_extra() -> None:
    """One line naming the extra, rather than an ImportError from deep inside a page."""
    import importlib.util

    missing = [name for name in UI_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"the web page needs the 'ui' extra ({', '.join(missing)} missing): "
                       "pip install 'gapstream[ui]'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("ui")
@click.option("--host", default=None, help="Address to listen on (default GAPSTREAM_UI_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default GAPSTREAM_UI_PORT, 8080).")
@click.option("--token", default=None, help="Access token every page and API call needs (default "
                                            "GAPSTREAM_UI_TOKEN); required for a non-loopback --host.")
@click.option("--user-token", "user_token_for", default=None, metavar="USER",
              help="Print the token that opens only USER's pages (derived from the operator token) and exit.")
@click.pass_obj
def ui_command(settings: Settings, host: Optional[str], port: Optional[int], token: Optional[str],
               user_token_for: Optional[str]) -> None:
    """Serve the web page: submit, watch live, results, history, memory, dead letters."""
    host = host or settings.ui_host
    port = settings.ui_port if port is None else port
    token = token or settings.ui_token
    if user_token_for is not None:
        from schemas.records import USER_ID_PATTERN
        import re

        if not token:
            raise CliError("--user-token needs the operator token (--token or GAPSTREAM_UI_TOKEN)")
        if not re.fullmatch(USER_ID_PATTERN, user_token_for):
            raise CliError(f"invalid user id {user_token_for!r}")
        from ui.auth import user_token

        click.echo(user_token(token, user_token_for))
        return
    if not is_loopback(host) and not token:
        raise CliError(f"--host {host} is not a loopback address: set an access token "
                       "(--token or GAPSTREAM_UI_TOKEN) so only people who have it can use the page")
    require_ui_extra()
    asyncio.run(serve(settings, host, port, token))


async def serve(settings: Settings, host: str, port: int, token: Optional[str]) -> None:
    import uvicorn

    from streams import logs
    from streams.broker import for_embedded
    from ui.app import build_app
    from ui.services import Services

    settings = for_embedded(settings)
    async with running_broker(settings) as bootstrap, running_redis(settings) as redis_url:
        workers: Any = contextlib.nullcontext()
        if settings.local_mode:
            from streams.topology import STAGES
            from streams.pipeline import Worker

            workers = Worker(settings, bootstrap, redis_url, STAGES)
        else:
            from streams.client import wait_for_broker

            await wait_for_broker(bootstrap)
        async with workers:
            effective = settings.with_overrides(kafka_bootstrap=bootstrap, redis_url=redis_url)
            async with Services(effective) as services:
                app = build_app(services, token=token, extra_hosts=(host,) if is_loopback(host) else ())
                config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                        lifespan="off")
                server = _server_class()(config)
                # uvicorn reports its own socket; say where the page is, and on which stack, once it listens.
                announce = asyncio.create_task(_announce(server, host, token, settings.local_mode, logs))
                try:
                    await server.serve()
                finally:
                    announce.cancel()
    logs.announce("gapstream ui: stopped")


def _server_class() -> Any:
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            """uvicorn's own re-raises SIGTERM once it has stopped serving, which kills this process before the
            embedded broker, Redis and stages are stopped (they were left running, orphaned). Here a signal only
            ends serving; `serve` then stops the rest and returns."""
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


async def _announce(server: Any, host: str, token: Optional[str], local: bool, logs: Any) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
    port = sockets[0].getsockname()[1] if sockets else server.config.port
    shown = f"[{host}]" if ":" in host else host
    where = "embedded broker, Redis and stages" if local else "the configured deployment"
    hint = " (add ?token=YOUR_TOKEN once)" if token else ""
    logs.announce(f"gapstream ui: http://{shown}:{port}/ on {where}{hint}")
