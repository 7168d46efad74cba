"""The awaitable forms of Channel.recv and Channel.send.

A waiting coroutine never blocks its event loop: when the channel is not
ready, the C side hands out a one-shot eventfd (Channel._arm) that becomes
readable when a message (or room, or close()) arrives, and the loop watches
it with add_reader. Channel._disarm unregisters and closes it; after that
the channel never writes to that fd number again, so the order in the
finally clause (stop watching, then disarm) matters.

A channel in Redis (--shared-url) has no eventfd to watch: the coroutine
sleeps between non-blocking tries, 1 ms at first, doubling up to 50 ms, so
the loop runs meanwhile and is held only for one round trip per try.
"""

import asyncio

from gorgon._gorgon import Empty, Full


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


_POLL_FIRST = 0.001
_POLL_MOST = 0.05


async def _pause(loop, deadline, pause):
    """Sleeps before the next try at a channel in Redis; False once the
    deadline passed."""
    if deadline is not None:
        left = deadline - loop.time()
        if left <= 0:
            return False
        pause = min(pause, left)
    await asyncio.sleep(pause)
    return True


async def _wait(ch, for_send, loop, deadline, tries=0):
    """Waits until the channel may be ready; False once the deadline passed."""
    if ch._remote:
        return await _pause(loop, deadline, min(_POLL_FIRST * 2 ** min(tries, 10), _POLL_MOST))
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
    tries = 0
    while True:
        # Another receiver may take what woke us: then wait again.
        ready = await _wait(ch, False, loop, deadline, tries)
        tries += 1
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
    tries = 0
    while True:
        ready = await _wait(ch, True, loop, deadline, tries)
        tries += 1
        try:
            return ch.send_nowait(value)
        except Full:
            if not ready:
                raise
