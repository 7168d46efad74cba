"""The ASGI lifespan protocol, run by each worker on its own asyncio loop.

Startup runs before the worker accepts connections; shutdown runs after the
worker has drained its connections on a graceful stop. Mode "auto" treats an
application that raises before answering startup as not supporting lifespan
(as uvicorn does); "on" makes that an error; "off" never calls it.
"""

import asyncio
import logging

log = logging.getLogger("gorgon.lifespan")


class Lifespan:
    def __init__(self, app, mode, state):
        self.app = app
        self.mode = mode
        self.state = state
        self.task = None
        self.queue = None
        self.started = None
        self.stopped = None
        self.failure = None
        self.unsupported = False

    async def _receive(self):
        return await self.queue.get()

    async def _send(self, message):
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.started.set_result(None)
        elif kind == "lifespan.startup.failed":
            self.started.set_result(message.get("message") or "startup failed")
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            self.stopped.set_result(message.get("message") or "shutdown failed")
        else:
            raise ValueError(f"unexpected lifespan message type {kind!r}")

    async def _main(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:  # the app's own failure, reported below
            if not self.started.done():
                if self.mode == "auto":
                    self.unsupported = True
                    self.started.set_result(None)
                else:
                    self.started.set_result(f"{type(exc).__name__}: {exc}")
            elif not self.stopped.done():
                self.stopped.set_result(f"{type(exc).__name__}: {exc}")
            return
        for fut in (self.started, self.stopped):
            if not fut.done():
                fut.set_result(None if self.mode == "auto" else "the application returned early")

    async def startup(self):
        """None when started (or lifespan is off/unsupported), else the failure message."""
        if self.mode == "off":
            return None
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.started = loop.create_future()
        self.stopped = loop.create_future()
        self.task = loop.create_task(self._main())
        await self.queue.put({"type": "lifespan.startup"})
        return await self.started

    async def shutdown(self):
        if self.mode == "off" or self.task is None or self.unsupported or self.task.done():
            return None
        await self.queue.put({"type": "lifespan.shutdown"})
        return await self.stopped


def cancel_all(loop):
    """Cancel tasks left running after the last response, and wait for them."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
