"""FastAPI (ASGI, pydantic v2): model validation in and out, 422 on bad input,
path and query parameters."""
from fastapi import FastAPI
from pydantic import BaseModel, Field

from _who import who

app = FastAPI()


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


class Priced(BaseModel):
    item: Item
    with_tax: float


@app.post("/items", response_model=Priced)
async def create(item: Item):
    return Priced(item=item, with_tax=round(item.price * 1.2, 2))


@app.get("/items/{item_id}")
async def read(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.get("/who")
def whoami():  # a sync endpoint: FastAPI runs it in its thread pool
    return who()
