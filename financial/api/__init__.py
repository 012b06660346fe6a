"""Flask-RESTX namespaces of the financial API, one module per resource."""
