"""OpenAPI request-body docs for handlers that read the raw body themselves.

The ingest paths parse with orjson and validate with their own error shape
(faster than FastAPI's body parsing, and every error names its field), so the
schema is attached explicitly: the docs, and schemathesis, still see it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter


def document_body(model: type[BaseModel], max_items: int | None = None, *also: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a JSON body that is one `model` (or one of `also`) or a list of them."""
    defs: dict[str, Any] = {}
    shapes = []
    for m in (model, *also):
        shape = TypeAdapter(m).json_schema()
        defs.update(shape.pop("$defs", {}))
        shapes.append(shape)
    one: dict[str, Any] = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    many: dict[str, Any] = {"type": "array", "items": one, "minItems": 1}
    if max_items is not None:
        many["maxItems"] = max_items
    schema: dict[str, Any] = {"anyOf": [one, many]}
    if defs:
        schema["$defs"] = defs
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
