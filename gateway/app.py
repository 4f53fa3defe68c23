"""``create_app(settings) -> Litestar``: wires plugins, routes and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.template.config import TemplateConfig

from gateway.api import dossiers as dossiers_api
from gateway.api import events, health, health_adapters, metrics, ops_audit, ops_dead_letters
from gateway.api import identity as identity_api
from gateway.api import jobs as jobs_api
from gateway.api import signatures as signatures_api
from gateway.api.options import repair_automatic_options
from gateway.api.problems import exception_handlers
from gateway.heap import settle_heap
from gateway.idempotency import IdempotencyMiddleware
from gateway.observability import RequestContextMiddleware, configure_logging
from gateway.ops import pages as ops_pages
from gateway.runtime import Runtime
from gateway.security import (
    AuthMiddleware,
    RateLimiter,
    RateLimitMiddleware,
    register_credential_resolver,
)
from gateway.settings import Settings, load_settings

__all__ = ["create_app", "create_app_from_env"]

API_DESCRIPTION = """
The one API through which the province's dossier system reaches the national systems.
Every command takes an `Idempotency-Key`; every error is an RFC 9457 problem document.
Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`.
"""


def create_app(settings: Settings, *, sandbox_url: str | None = None) -> Litestar:
    configure_logging(settings.logging)
    runtime = Runtime.build(settings, sandbox_url=sandbox_url)
    # each adapter's callback routes, under /callbacks/<name> (conventions 7 and 8)
    runtime.instantiate_adapters()
    callback_routers = [
        Router(path=f"/callbacks/{name}", route_handlers=list(adapter.callback_routes()))
        for name, adapter in runtime.registry.instances.items()
        if adapter.callback_routes()
    ]
    # the dashboard's session cookie is a credential too (tried after API keys)
    register_credential_resolver(ops_pages.session_credentials)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        settle_heap()  # the start-up heap out of the collector's way (gateway/heap.py)
        try:
            yield
        finally:
            await runtime.stop()

    async def provide_runtime() -> Runtime:
        return runtime

    app = Litestar(
        route_handlers=[
            *health.routes,
            *health_adapters.routes,
            *metrics.routes,
            *jobs_api.routes,
            *ops_dead_letters.routes,
            *events.routes,
            *ops_audit.routes,
            *ops_pages.routes,
            *dossiers_api.routes,
            *identity_api.routes,
            *signatures_api.routes,
            *callback_routers,
        ],
        template_config=TemplateConfig(
            directory=ops_pages.TEMPLATE_DIR, engine=JinjaTemplateEngine
        ),
        dependencies={"runtime": Provide(provide_runtime, use_cache=True)},
        exception_handlers=exception_handlers(),
        # the first is the outermost: request id, then who is calling, then how often
        middleware=[
            RequestContextMiddleware,
            DefineMiddleware(AuthMiddleware, directory=runtime.clients, settings=settings),
            DefineMiddleware(
                RateLimitMiddleware,
                limiter=RateLimiter(
                    runtime.store,
                    default_per_minute=settings.security.rate_limit.default_per_minute,
                ),
                enabled=settings.security.rate_limit.enabled,
            ),
            # after auth: Idempotency-Key records are kept per client
            IdempotencyMiddleware(
                runtime.store,
                ttl=settings.jobs.idempotency_ttl,
                max_body_bytes=settings.server.max_body_bytes,
            ),
        ],
        # logging is ours (gateway.observability): one masked handler for every logger
        logging_config=None,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="dvc-gateway",
            version="1",
            description=API_DESCRIPTION.strip(),
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            # the two ways to present a key (gateway.security), so the docs UI can send one
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                    "apiKey": SecurityScheme(
                        type="apiKey", name="X-API-Key", security_scheme_in="header"
                    ),
                }
            ),
            security=[{"bearer": []}, {"apiKey": []}],
        ),
        request_max_body_size=settings.server.max_body_bytes,
        debug=False,
    )
    repair_automatic_options(app)
    app.state.runtime = runtime
    return app


def create_app_from_env() -> Litestar:
    """Factory for uvicorn (``--processes``): settings from GATEWAY_CONFIG and the environment."""
    import os

    return create_app(load_settings(), sandbox_url=os.environ.get("GATEWAY_SANDBOX_URL") or None)
