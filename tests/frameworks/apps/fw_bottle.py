"""Bottle: a SimpleTemplate page, a form POST, a dict answered as JSON."""
import bottle

from _who import who

app = bottle.Bottle()


@app.get("/hello/<name>")
def hello(name):
    return bottle.template("<h1>Hello, {{name}}!</h1><p>{{len(items)}} items</p>", name=name, items=[1, 2])


@app.post("/form")
def form():
    return {"name": bottle.request.forms.getunicode("name"), "n": int(bottle.request.forms.get("n", "0")) + 1}


@app.get("/who")
def whoami():
    return who()
