"""Applications given as MODULE:FACTORY() and as callable objects
(test_app_spec.py)."""


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi from a factory\n"]


def make():
    return wsgi_app


def raises():
    raise RuntimeError("no app today")


class AsgiCallable:
    """An ASGI app that is an object with an async __call__ (as Starlette's
    and FastAPI's are): recognised as ASGI by its __call__."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"asgi from an object\n"})


class WsgiCallable:
    def __call__(self, environ, start_response):
        return wsgi_app(environ, start_response)


asgi_object = AsgiCallable()
wsgi_object = WsgiCallable()


def make_asgi():
    return AsgiCallable()
