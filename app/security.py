"""Security headers on every response, and whose forwarded client address to trust."""
from collections.abc import Mapping

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from conf.settings import ConfigError

# One policy for every response: the HTML pages (Swagger UI, the dashboard)
# load scripts, styles, fonts and data only from this origin and run no
# inline code; JSON responses are never framed or run either.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


def register_security_headers(app: Flask) -> None:
    """Add SECURITY_HEADERS to every response that does not set its own."""

    @app.after_request
    def _add_security_headers(response: Response) -> Response:
        headers = response.headers
        present = {name.lower() for name in headers.keys()}
        headers.extend([(name, value) for name, value in SECURITY_HEADERS.items()
                        if name.lower() not in present])
        return response


def check_proxy_hops(config: Mapping) -> None:
    """Raise ConfigError when TRUSTED_PROXY_HOPS is negative."""
    hops = config["TRUSTED_PROXY_HOPS"]
    if hops < 0:
        raise ConfigError(f"TRUSTED_PROXY_HOPS must be 0 or more, got {hops}")


def trust_proxy_hops(app: Flask) -> None:
    """Take the client's address, scheme and host from TRUSTED_PROXY_HOPS proxies' headers.

    Each trusted proxy appends to X-Forwarded-For, so exactly that many
    entries from the right are believed; a client cannot spoof its address
    (and so its rate limit) by sending the header itself. 0 trusts none;
    create_app has refused a negative count (``check_proxy_hops``).
    """
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        proxied = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
        app.wsgi_app = proxied  # type: ignore[method-assign]
