"""Serving: uvicorn on a socket of our own, and a shutdown that drains.

Ctrl-C or SIGTERM: the listening socket closes (no new connections), requests on open connections
get 503, the requests already running go on for up to `drain_timeout` seconds and are then cut
(their choices end with finish_reason "length"), and once every response is sent the server
exits with status 0. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys

import uvicorn

from ..base.errors import GPT2Error
from .app import create_app

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the decode loop to drain at the first signal, and ending without
    re-raising the signal (uvicorn raises it again after a graceful exit, which would make the
    process's status 130 or -15 instead of 0)."""

    def __init__(self, config: uvicorn.Config, worker, drain_timeout: float):
        super().__init__(config)
        self.worker = worker
        self.drain_timeout = drain_timeout

    def handle_exit(self, sig, frame) -> None:
        self.worker.drain(self.drain_timeout)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:
        sock.close()
        raise GPT2Error(f"cannot listen on {host}:{port} ({getattr(error, 'strerror', None) or error})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    load,
    *,
    served_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout: float = 30.0,
    log_level: str = "info",
    **options,
) -> int:
    """Serve until a signal; returns the exit status (0 after a drain, 2 if the model failed to load).
    `options` go to `create_app`. The socket is bound before the model loads (port 0: any free
    port), and the address is printed on stderr."""
    failure = []
    server: DrainingServer | None = None

    def on_load_error(error: BaseException) -> None:
        failure.append(error)
        if server is not None:
            server.should_exit = True

    app = create_app(load, served_name=served_name, on_load_error=on_load_error, **options)
    sock = listening_socket(host, port)
    address = sock.getsockname()
    shown_host = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(drain_timeout) + 30,  # the drain cuts requests before this
        limit_concurrency=max(64, 4 * (options.get("max_queue", 64) + options.get("max_batch_size", 16))),
    )
    server = DrainingServer(config, app.state.server.worker, drain_timeout)
    print(
        f"gpt2 serve: listening on http://{shown_host}:{address[1]} (model {served_name!r})",
        file=sys.stderr,
        flush=True,
    )
    server.run(sockets=[sock])
    if failure:
        error = failure[0]
        raise error if isinstance(error, Exception) else RuntimeError(str(error))
    return 0
