"""Flask: a Jinja template, the signed session cookie, JSON, a file upload."""
import hashlib
import os

from flask import Flask, jsonify, render_template, request, session

from _who import who

app = Flask(__name__, template_folder=os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates"))
app.secret_key = "gorgon framework tier"


@app.get("/")
def index():
    return render_template("index.html", title="flask", name=request.args.get("name", "world"), items=[1, 2, 3])


@app.get("/session")
def counter():
    session["n"] = session.get("n", 0) + 1
    return jsonify(n=session["n"])


@app.post("/json")
def echo():
    data = request.get_json()
    return jsonify(got=data, keys=sorted(data))


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(name=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form.get("note"))


@app.get("/who")
def whoami():
    return jsonify(who())
