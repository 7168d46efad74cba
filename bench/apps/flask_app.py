"""A small Flask page rendered from a Jinja template (bench/apps/templates)."""

import os

from flask import Flask, render_template

app = Flask(__name__, template_folder=os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates"))

ITEMS = [{"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b", "c"][: i % 3 + 1]}
         for i in range(20)]


@app.route("/")
def index():
    return render_template("page.html", title="gorgon bench", items=ITEMS, user={"name": "Ada"})
