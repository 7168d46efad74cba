"""Quart (ASGI, Flask's API on asyncio): a template, JSON, the session cookie."""
from quart import Quart, jsonify, render_template_string, request, session

from _who import who

app = Quart(__name__)
app.secret_key = "gorgon framework tier"


@app.get("/")
async def index():
    return await render_template_string("<h1>Hello, {{ name }}!</h1>", name=request.args.get("name", "world"))


@app.post("/json")
async def echo():
    return jsonify(got=await request.get_json())


@app.get("/session")
async def counter():
    session["n"] = session.get("n", 0) + 1
    return jsonify(n=session["n"])


@app.get("/who")
async def whoami():
    return jsonify(who())
