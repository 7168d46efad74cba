"""Falcon (WSGI): resources, JSON media in and out, path parameters, 404."""
import falcon

from _who import who


class Items:
    def __init__(self):
        self.items = {}

    def on_get(self, req, resp, item_id):
        if item_id not in self.items:
            raise falcon.HTTPNotFound(title="no such item")
        resp.media = {"id": item_id, **self.items[item_id]}

    def on_put(self, req, resp, item_id):
        self.items[item_id] = req.get_media()
        resp.media = {"id": item_id, "stored": True}
        resp.status = falcon.HTTP_201


class Who:
    def on_get(self, req, resp):
        resp.media = who()


app = falcon.App()
app.add_route("/items/{item_id:int}", Items())
app.add_route("/who", Who())
