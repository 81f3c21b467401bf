"""How fast each converter loads and dumps typed payloads: the measurement behind the
choice in ``aiki._types`` (pydantic-core when installed, else the stdlib converter).

    PYTHONPATH=src .venv/bin/python -m benchmarks.typed_overhead

Prints microseconds per call for a small order (an id, an e-mail, three items, an
optional datetime) as a dataclass, a TypedDict and ``dict[str, Any]``, loaded from JSON
values and dumped back, by the stdlib converter and by a pydantic ``TypeAdapter``; and a
pydantic model through aiki's ``PayloadType``, the path workflows take.
"""

from __future__ import annotations

import dataclasses
import datetime
import timeit
from typing import Any

import pydantic
import typing_extensions

from aiki._stdlib_types import compile_type
from aiki._types import payload_type


@dataclasses.dataclass
class Item:
    sku: str
    quantity: int
    price: float


@dataclasses.dataclass
class Order:
    order_id: str
    email: str
    items: list[Item]
    at: datetime.datetime | None = None


class OrderDict(typing_extensions.TypedDict):
    order_id: str
    email: str
    items: list[dict[str, Any]]


class ModelItem(pydantic.BaseModel):
    sku: str
    quantity: int
    price: float


class ModelOrder(pydantic.BaseModel):
    order_id: str
    email: str
    items: list[ModelItem]
    at: datetime.datetime | None = None


DATA = {
    "order_id": "o1",
    "email": "a@example.com",
    "items": [{"sku": f"s{i}", "quantity": i, "price": 1.5} for i in range(3)],
}


def _us(fn: Any, number: int = 20_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def main() -> None:
    print(f"{'type':<16} {'converter':<10} {'load us':>8} {'dump us':>8}")
    for name, tp in (("dataclass", Order), ("TypedDict", OrderDict), ("dict", dict[str, Any])):
        node = compile_type(tp)
        adapter: Any = pydantic.TypeAdapter(tp)
        instance = node.load(DATA)
        stdlib = (_us(lambda: node.load(DATA)), _us(lambda: node.dump(instance)))  # noqa: B023
        fast = (
            _us(lambda: adapter.validate_python(DATA)),  # noqa: B023
            _us(lambda: adapter.dump_python(adapter.validate_python(instance), mode="json")),  # noqa: B023
        )
        for converter, (load_us, dump_us) in (("stdlib", stdlib), ("pydantic", fast)):
            print(f"{name:<16} {converter:<10} {load_us:8.2f} {dump_us:8.2f}")
    model = payload_type(ModelOrder)
    instance = model.load(DATA)
    load_us, dump_us = _us(lambda: model.load(DATA)), _us(lambda: model.dump(instance))
    print(f"{'pydantic model':<16} {'PayloadType':<10} {load_us:8.2f} {dump_us:8.2f}")


if __name__ == "__main__":
    main()
