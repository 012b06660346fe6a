"""Swagger models every namespace shares: the envelope's info block and the error body."""
from flask_restx import Model, Namespace, fields

info_model = Model("Info", {
    "error": fields.String(example="", description='"" on success, else what is wrong'),
})
pagination_model = Model("Pagination", {
    "count": fields.Integer(example=20, description="Items matching the filters"),
    "page": fields.Integer(example=2),
    "limit": fields.Integer(example=3),
    "pages": fields.Integer(example=7, description="ceil(count / limit); 0 when count is 0"),
})
error_model = Model("Error", {
    "data": fields.Raw(example={}, description="[] on list endpoints, {} elsewhere"),
    "pagination": fields.Raw(example=None, description="null; list endpoints only"),
    "info": fields.Nested(info_model),
})


class NullableString(fields.String):
    """A string field that may be null, marked so in the OpenAPI document (``x-nullable``)."""

    def schema(self) -> dict:
        return {**super().schema(), "x-nullable": True}


def namespace(name: str, description: str) -> Namespace:
    """Create a namespace that knows the shared models."""
    ns = Namespace(name, description=description)
    for model in (info_model, pagination_model, error_model):
        ns.add_model(model.name, model)
    return ns
