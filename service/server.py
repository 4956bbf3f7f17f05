"""Running the app under uvicorn with a graceful SIGTERM: the server keeps its socket open and answers new API
requests 503 while those in flight finish, then exits (status 0). Ctrl-C (SIGINT) and a second SIGTERM stop it
as uvicorn does."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .app import DRAIN_GRACE_SECONDS, Lifecycle

logger = logging.getLogger("uvicorn.error")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining on the first SIGTERM (`lifecycle.start_draining`) until no request is in flight
    or `drain_timeout` seconds have passed."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_timeout: float):
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_timeout = drain_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self.lifecycle.draining:
            # Not passed on: uvicorn would close the socket at once, and raise SIGTERM again once it stopped.
            logger.info("SIGTERM: draining (%d requests in flight; new ones get 503)", self.lifecycle.in_flight)
            self.lifecycle.start_draining()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.lifecycle.drained(self.drain_timeout):
            self.should_exit = True
        return await super().on_tick(counter)


def serve(app: FastAPI, host: str, port: int, request_timeout: float) -> bool:
    """Serve `app` until SIGTERM (drained), SIGINT or a second SIGTERM; False when it could not start (the
    address is taken)."""
    lifecycle = app.state.service.lifecycle
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=DRAIN_GRACE_SECONDS)
    server = DrainingServer(config, lifecycle, drain_timeout=request_timeout + DRAIN_GRACE_SECONDS)
    server.run()
    return server.started
