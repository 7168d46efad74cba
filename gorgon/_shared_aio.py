"""The awaitable forms of Channel.recv and Channel.send.

A waiting coroutine never blocks its event loop: when the channel is not
ready, the C side hands out a one-shot eventfd (Channel._arm) that becomes
readable when a message (or room, or close()) arrives, and the loop watches
it with add_reader. Channel._disarm unregisters and closes it; after that
the channel never writes to that fd number again, so the order in the
finally clause (stop watching, then disarm) matters.
"""

import asyncio

from gorgon._gorgon import Empty, Full


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


async def _wait(ch, for_send, loop, deadline):
    """Waits until the channel may be ready; False once the deadline passed."""
    fd = ch._arm(for_send)
    if fd is None:
        return True  # ready already: try again at once
    fut = loop.create_future()
    try:
        loop.add_reader(fd, _wake, fut)
        if deadline is None:
            await fut
            return True
        left = deadline - loop.time()
        if left <= 0:
            return False
        try:
            await asyncio.wait_for(fut, left)
        except TimeoutError:
            return False
        return True
    finally:
        loop.remove_reader(fd)
        ch._disarm(fd)


async def recv(ch, timeout=None):
    try:
        return ch.recv_nowait()
    except Empty:
        pass
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        # Another receiver may take what woke us: then wait again.
        ready = await _wait(ch, False, loop, deadline)
        try:
            return ch.recv_nowait()
        except Empty:
            if not ready:
                raise


async def send(ch, value, timeout=None):
    try:
        return ch.send_nowait(value)
    except Full:
        pass
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        ready = await _wait(ch, True, loop, deadline)
        try:
            return ch.send_nowait(value)
        except Full:
            if not ready:
                raise
