"""Starlette (ASGI): routes with path parameters, JSON, a lifespan with state,
a streamed response, a multipart form."""
import contextlib
import hashlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from _who import who


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "set by lifespan"}


async def home(request):
    return PlainTextResponse("Hello from Starlette")


async def user(request):
    return JSONResponse({"name": request.path_params["name"], "q": dict(request.query_params),
                         "greeting": request.state.greeting})


async def echo(request):
    return JSONResponse({"got": await request.json()})


async def stream(request):
    async def chunks():
        for i in range(3):
            yield b"chunk %d\n" % i
    return StreamingResponse(chunks(), media_type="text/plain")


async def upload(request):
    form = await request.form()
    data = await form["file"].read()
    return JSONResponse({"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "note": form["note"]})


async def whoami(request):
    return JSONResponse(who())


app = Starlette(routes=[Route("/", home), Route("/users/{name}", user), Route("/json", echo, methods=["POST"]),
                        Route("/stream", stream), Route("/upload", upload, methods=["POST"]),
                        Route("/who", whoami)], lifespan=lifespan)
