"""``gateway demo``: the gateway, the simulators and a provincial receiver, narrated.

:func:`run_demo` starts everything in this process on free loopback ports with a temporary
SQLite store: the gateway (sandbox mode), the sandbox (every installed adapter's simulator)
and a :class:`~gateway.webhook_receiver.WebhookReceiver` playing the provincial system. It
then runs the demo steps in order, saying what happens in plain words, and ends by pointing
at the dashboard.

Steps are a registry, so each adapter adds its own from its package without the core knowing
it: put a ``demo.py`` module in ``adapters/<system>/`` (imported by the demo when the adapter
is configured) and register steps there::

    from gateway.demo import DemoContext, demo_step

    @demo_step("Verify a citizen", order=40, adapter="population_db")
    async def verify_citizen(ctx: DemoContext) -> None:
        response = await ctx.http.post("/v1/citizens/verify", json={...})
        ctx.check(response.status_code == 200, f"verify answered {response.status_code}")
        ctx.say("the population database confirmed the citizen")

``ctx.http`` is an ``httpx.AsyncClient`` on the gateway, authenticated with a demo key that
holds every scope; ``ctx.runtime`` is the gateway's runtime; ``ctx.receiver`` has the webhooks
received; ``ctx.wait_for_event(type)`` waits for one; ``ctx.state`` carries data between
steps. Core steps use orders 10, 20, 30 and 90; adapters take the numbers between.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import importlib.util
import json
import logging
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from litestar import Litestar, Request, Response, post
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gateway.adapters import AdapterRegistry
from gateway.runtime import Runtime
from gateway.security import generate_api_key, hash_api_key
from gateway.settings import Settings
from gateway.store.base import Job
from gateway.webhook_receiver import Delivery, WebhookReceiver

__all__ = [
    "DemoContext",
    "DemoFailed",
    "DemoStep",
    "demo_step",
    "register_step",
    "run_demo",
    "steps",
]

DEMO_CLIENT_ID = "demo"
DEMO_SYSTEM = "demo_system"
DEMO_COMMAND_KIND = "demo.command"
DEMO_ENDPOINT_ID = "demo-receiver"
DEMO_DOSSIER = "DEMO.00-260101-0001"
#: granted to the demo key besides every scope the app's routes declare
BASE_SCOPES = ("events:read", "ops:read", "ops:write", f"callbacks:{DEMO_SYSTEM}")


class DemoFailed(Exception):
    """A step saw something other than what it shows (the demo then exits 1)."""


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One narrated step. ``adapter``: run only when that adapter is configured."""

    name: str
    title: str
    run: Callable[[DemoContext], Awaitable[None]]
    order: int = 50
    adapter: str | None = None


_STEPS: dict[str, DemoStep] = {}


def register_step(step: DemoStep) -> None:
    """Add (or replace, by name) a step."""
    _STEPS[step.name] = step


def demo_step(
    title: str, *, order: int = 50, adapter: str | None = None, name: str | None = None
) -> Callable[[Callable[[DemoContext], Awaitable[None]]], Callable[[DemoContext], Awaitable[None]]]:
    """Decorator registering an ``async def step(ctx: DemoContext) -> None``."""

    def register(
        fn: Callable[[DemoContext], Awaitable[None]],
    ) -> Callable[[DemoContext], Awaitable[None]]:
        step_name = name or f"{fn.__module__}.{fn.__name__}"
        register_step(DemoStep(step_name, title, fn, order, adapter))
        return fn

    return register


def steps() -> list[DemoStep]:
    return sorted(_STEPS.values(), key=lambda s: (s.order, s.name))


@dataclass
class DemoContext:
    """What a step gets."""

    settings: Settings
    runtime: Runtime
    gateway_url: str
    sandbox_url: str
    #: on the gateway, with the demo key
    http: httpx.AsyncClient
    api_key: str
    client_id: str
    receiver: WebhookReceiver
    out: Callable[[str], None]
    #: shared between steps
    state: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        self.out(f"    {text}")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            raise DemoFailed(message)

    async def wait_for_event(
        self,
        event_type: str,
        match: Callable[[dict[str, Any]], bool] = lambda payload: True,
        *,
        within: float = 15.0,
    ) -> Delivery:
        """The first verified webhook of ``event_type`` whose payload satisfies ``match``."""

        def found(deliveries: list[Delivery]) -> bool:
            return self._find(deliveries, event_type, match) is not None

        try:
            deliveries = await self.receiver.wait_for(found, within=within)
        except TimeoutError:
            raise DemoFailed(f"no {event_type} webhook arrived within {within:g}s") from None
        delivery = self._find(deliveries, event_type, match)
        assert delivery is not None
        return delivery

    @staticmethod
    def _find(
        deliveries: list[Delivery], event_type: str, match: Callable[[dict[str, Any]], bool]
    ) -> Delivery | None:
        for d in deliveries:
            if (
                d.verified
                and d.payload
                and d.payload.get("type") == event_type
                and match(d.payload)
            ):
                return d
        return None


# ---------------------------------------------------------------- the core's steps


def _demo_command(runtime: Runtime) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    """Stands in for an adapter's command handler (a status pushed to a national system),
    auditing its exchange as adapters do."""

    async def handle(job: Job) -> dict[str, Any]:
        started = time.perf_counter()
        await asyncio.sleep(0.05)  # the national system's answer
        dossier = str(job.payload.get("dossier_code"))
        await runtime.audit.record(
            direction="outbound",
            actor=DEMO_SYSTEM,
            adapter=DEMO_SYSTEM,
            operation="push_status",
            outcome="ok",
            status=200,
            latency_ms=(time.perf_counter() - started) * 1000,
            dossier_code=dossier,
            payload=json.dumps(job.payload).encode(),
            subjects=["079012345678"],  # the applicant's ID: kept only as a keyed digest
        )
        return {"dossier_code": dossier, "accepted": True}

    return handle


@post(f"/callbacks/{DEMO_SYSTEM}/notify", opt={"scopes": [f"callbacks:{DEMO_SYSTEM}"]})
async def _demo_callback(request: Request[Any, Any, Any], runtime: Runtime) -> Response[bytes]:
    """Stands in for an adapter's callback route (adapters add their own real ones)."""
    body = await request.body()
    message = json.loads(body)
    reply = await runtime.callbacks.accept(
        system=DEMO_SYSTEM,
        event_id=str(message["message_id"]),
        event_type="demo.notice_received",
        data={"dossier_code": message.get("dossier_code"), "notice": message.get("notice")},
        subject=message.get("dossier_code"),
        reply=b'{"result":"received"}',
        media_type="application/json",
        actor=getattr(request.user, "id", None),
        payload=body,
        dossier_code=message.get("dossier_code"),
    )
    response = reply.to_response()
    response.headers["x-demo-duplicate"] = "true" if reply.duplicate else "false"
    return response


async def _poll_job(ctx: DemoContext, job_id: str, *, within: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await ctx.http.get(f"/v1/jobs/{job_id}")
        ctx.check(response.status_code == 200, f"GET /v1/jobs answered {response.status_code}")
        body: dict[str, Any] = response.json()
        if body["state"] in ("succeeded", "dead"):
            return body
        if time.monotonic() > deadline:
            raise DemoFailed(f"job {job_id} still {body['state']} after {within:g}s")
        await asyncio.sleep(0.1)


def _show_delivery(ctx: DemoContext, d: Delivery) -> None:
    signature = d.headers.get("webhook-signature", "")
    ctx.say(f"webhook-id        {d.webhook_id}")
    ctx.say(f"webhook-timestamp {d.headers.get('webhook-timestamp')}")
    ctx.say(f"webhook-signature {signature[:24]}…")
    ctx.say("✔ the receiver verified the signature with the standardwebhooks package")


@demo_step("A command becomes a durable job", order=10, name="core.command")
async def command_job(ctx: DemoContext) -> None:
    ctx.say("A command from the provincial system is answered at once with a job id; a worker")
    ctx.say("then runs it, retrying if the national system fails, in order per dossier.")
    job = await ctx.runtime.jobs.enqueue(
        DEMO_COMMAND_KIND,
        {"dossier_code": DEMO_DOSSIER, "status": "processing"},
        ordering_key=DEMO_DOSSIER,
        client_id=ctx.client_id,
    )
    ctx.say(f"enqueued job {job.id} (ordering key {job.ordering_key})")
    body = await _poll_job(ctx, job.id)
    ctx.check(body["state"] == "succeeded", f"the job ended {body['state']}")
    ctx.say(f"GET /v1/jobs/{job.id} → {body['state']} after {body['attempt_count']} attempt(s)")
    delivery = await ctx.wait_for_event("job.succeeded", lambda p: p["data"]["job_id"] == job.id)
    ctx.say("the provincial system was told by webhook (job.succeeded):")
    _show_delivery(ctx, delivery)
    ctx.state["job_id"] = job.id


@demo_step("A national system calls back", order=20, name="core.callback")
async def callback(ctx: DemoContext) -> None:
    ctx.say("A national system pushes a notice; the gateway answers in the system's format")
    ctx.say("within milliseconds, and forwards it to the provincial system as a webhook.")
    body = json.dumps(
        {"message_id": "DEMO-MSG-0001", "dossier_code": DEMO_DOSSIER, "notice": "paid"}
    ).encode()
    url = f"/callbacks/{DEMO_SYSTEM}/notify"
    started = time.perf_counter()
    first = await ctx.http.post(url, content=body, headers={"content-type": "application/json"})
    took = (time.perf_counter() - started) * 1000
    ctx.check(first.status_code == 200, f"the callback answered {first.status_code}")
    ctx.say(f"POST {url} → {first.status_code} {first.text} in {took:.0f} ms")
    again = await ctx.http.post(url, content=body, headers={"content-type": "application/json"})
    ctx.check(again.content == first.content, "the repeated callback got another answer")
    ctx.check(again.headers.get("x-demo-duplicate") == "true", "the copy was not recognised")
    ctx.say("the system sent it again (as systems do when an answer is lost): same answer,")
    ctx.say("recognised as a copy by its message id, not forwarded twice")
    delivery = await ctx.wait_for_event(
        "demo.notice_received", lambda p: p["data"]["source"]["event_id"] == "DEMO-MSG-0001"
    )
    await asyncio.sleep(0.3)
    copies = [d for d in ctx.receiver.verified if d.webhook_id == delivery.webhook_id]
    ctx.check(len(copies) == 1, f"the notice was forwarded {len(copies)} times")
    ctx.say("forwarded once:")
    _show_delivery(ctx, delivery)


@demo_step("Webhooks and the pull feed", order=30, name="core.webhooks")
async def webhooks(ctx: DemoContext) -> None:
    received = ctx.receiver.verified
    ctx.say(f"the receiver has {len(received)} webhook(s), every signature verified")
    sample = received[0]
    try:
        Webhook(ctx.receiver.secret).verify(sample.body.replace(b"DEMO", b"FAKE"), sample.headers)
    except WebhookVerificationError:
        ctx.say("✔ a tampered copy of one is refused by the same check")
    else:
        raise DemoFailed("a tampered body verified")
    response = await ctx.http.get("/v1/events", params={"limit": 100})
    ctx.check(response.status_code == 200, f"GET /v1/events answered {response.status_code}")
    feed = response.json()["items"]
    ctx.say(f"GET /v1/events (for systems that poll instead) lists {len(feed)} event(s):")
    for item in feed[-5:]:
        ctx.say(f"  {item['id']}  {item['type']}")


@demo_step("The audit chain", order=90, name="core.audit")
async def audit_chain(ctx: DemoContext) -> None:
    ctx.say("Every exchange is an audit record: metadata, SHA-256 of the payload, keyed")
    ctx.say("digests of personal identifiers, never the data; each record hashes the previous.")
    ctx.say("This demo's exchanges (GET /ops/api/audit, by dossier and by operation):")
    records: dict[int, dict[str, Any]] = {}
    for params in ({"dossier_code": DEMO_DOSSIER}, {"operation": "webhook.deliver"}):
        page = await ctx.http.get("/ops/api/audit", params={**params, "limit": 20})
        ctx.check(page.status_code == 200, f"GET /ops/api/audit answered {page.status_code}")
        records.update({r["seq"]: r for r in page.json()["items"]})
    for seq in sorted(records):
        r = records[seq]
        digests = f"{len(r['subject_digests'])} ID digest(s)" if r["subject_digests"] else ""
        line = (
            f"  #{seq:<4} {r['direction']:<8} {r['actor']:<24} {r['operation']:<32} "
            f"{r['outcome']:<9} {r['hash'][:10]}… {digests}"
        )
        ctx.say(line.rstrip())
    chain = await ctx.http.get("/ops/api/audit/verify", params={"full": "true"})
    result = chain.json()
    ctx.check(result["ok"] is True, f"the chain is broken at #{result.get('first_broken_seq')}")
    ctx.say(f"✔ chain verified: {result['checked']} records, every hash and link intact")
    ctx.say("(`gateway audit verify` does the same from a shell and names a broken record)")


# ---------------------------------------------------------------- running it


class _Server(uvicorn.Server):
    """uvicorn in our event loop, leaving Ctrl-C to the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def _serving(app: Any, sock: socket.socket) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise DemoFailed("a server did not start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def route_scopes(app: Litestar) -> set[str]:
    found: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            found.update(handler.opt.get("scopes", ()))
    return found


def load_adapter_steps(adapter_classes: Iterable[type]) -> None:
    """Import ``<adapter package>.demo`` for each adapter that has one (it registers steps)."""
    for cls in adapter_classes:
        package = importlib.import_module(cls.__module__).__package__
        if not package:
            continue
        name = f"{package}.demo"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def _ensure_dev_pki(settings: Settings, simulators: Iterable[str]) -> None:
    try:
        from signing.keys import ensure_dev_pki
    except ImportError:
        return
    ensure_dev_pki(settings.signing.dev_pki_dir, simulators=sorted(simulators))


async def run_demo(
    make_settings: Callable[[dict[str, Any]], Settings],
    *,
    out: Callable[[str], None],
    keep_running: bool,
) -> int:
    """Run every step; 0 when all passed. ``make_settings(overrides)`` loads the settings
    (the configuration file's adapters, with the demo's ports, store and receiver)."""
    from gateway.app import create_app
    from gateway.sandbox import build_sandbox

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = WebhookReceiver(secret)
    key = generate_api_key()
    gateway_sock, sandbox_sock, receiver_sock = _bound_socket(), _bound_socket(), _bound_socket()
    gateway_url = f"http://127.0.0.1:{gateway_sock.getsockname()[1]}"
    sandbox_url = f"http://127.0.0.1:{sandbox_sock.getsockname()[1]}"
    receiver_url = f"http://127.0.0.1:{receiver_sock.getsockname()[1]}"
    with tempfile.TemporaryDirectory(prefix="dvc-gateway-demo-") as tmp:
        workdir = Path(tmp)

        def settings_with(scopes: Iterable[str]) -> Settings:
            return make_settings(
                {
                    "environment": "sandbox",
                    "server": {"host": "127.0.0.1", "port": gateway_sock.getsockname()[1]},
                    "store": {"backend": "sqlite", "sqlite_path": str(workdir / "gateway.db")},
                    "sandbox": {"enabled": True, "port": sandbox_sock.getsockname()[1]},
                    "security": {"clients_file": str(workdir / "clients.toml")},
                    "clients": [
                        {
                            "id": DEMO_CLIENT_ID,
                            "key_sha256": hash_api_key(key),
                            "scopes": sorted(set(scopes)),
                            "description": "the demo's own key",
                        }
                    ],
                    "jobs": {"workers": 2, "poll_interval": 0.05},
                    "webhooks": {
                        "endpoints": [
                            {"id": DEMO_ENDPOINT_ID, "url": f"{receiver_url}/", "secret": secret}
                        ],
                        "feed_settle_seconds": 0.0,
                    },
                    "audit": {"export_dir": str(workdir / "audit-export")},
                    "logging": {"level": "ERROR"},
                }
            )

        # one app to learn the scopes its routes need, then the real one with a key for them
        probe = create_app(settings_with(BASE_SCOPES), sandbox_url=sandbox_url)
        scopes = route_scopes(probe) | set(BASE_SCOPES)
        registry: AdapterRegistry = probe.state.runtime.registry
        configured = set(registry.configs)
        del probe
        settings = settings_with(scopes)
        _ensure_dev_pki(settings, registry.available)
        load_adapter_steps(c for name, c in registry.available.items() if name in configured)
        app = create_app(settings, sandbox_url=sandbox_url)
        app.register(_demo_callback)
        runtime: Runtime = app.state.runtime
        runtime.jobs.register_handler(DEMO_COMMAND_KIND, _demo_command(runtime))
        sandbox_app = build_sandbox(settings, base_url=sandbox_url, gateway_url=gateway_url)

        out("dvc-gateway demo: the gateway, every national system's simulator (the sandbox)")
        out("and a receiver playing the provincial system, all on this machine.")
        out(f"  gateway   {gateway_url}")
        out(f"  sandbox   {sandbox_url}  ({', '.join(sorted(sandbox_app.simulators)) or 'none'})")
        out(f"  receiver  {receiver_url}  (verifies Standard Webhooks signatures)")
        out(f"  store     {workdir / 'gateway.db'} (temporary)")
        root_handlers = list(logging.getLogger().handlers)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(_serving(receiver, receiver_sock))
            await stack.enter_async_context(_serving(sandbox_app, sandbox_sock))
            _restore_logging(root_handlers, settings)  # before the gateway logs its start
            await stack.enter_async_context(_serving(app, gateway_sock))
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
                )
            )
            ctx = DemoContext(
                settings=settings,
                runtime=runtime,
                gateway_url=gateway_url,
                sandbox_url=sandbox_url,
                http=http,
                api_key=key,
                client_id=DEMO_CLIENT_ID,
                receiver=receiver,
                out=out,
            )
            failed = await _run_steps(ctx, configured, out)
            out("")
            out(f"Dashboard: {gateway_url}/ops  (sign in with the demo key: {key})")
            out(f"API docs:  {gateway_url}/schema/swagger")
            if keep_running and not failed:
                out("The demo gateway keeps running; press Ctrl-C to stop (its store goes too).")
                await _until_interrupted()
        return 1 if failed else 0


def _restore_logging(before: list[logging.Handler], settings: Settings) -> None:
    """A simulator built on a framework may have configured logging on start-up (its own
    handlers on the root logger); in this shared process the gateway's setup must win."""
    from gateway.observability import configure_logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    configure_logging(settings.logging)


async def _run_steps(ctx: DemoContext, configured: set[str], out: Callable[[str], None]) -> int:
    chosen = steps()
    failed = 0
    for number, step in enumerate(chosen, 1):
        out("")
        out(f"[{number}/{len(chosen)}] {step.title}")
        if step.adapter is not None and step.adapter not in configured:
            out(f"    skipped: the {step.adapter} adapter is not configured")
            continue
        try:
            await step.run(ctx)
        except DemoFailed as exc:
            failed += 1
            out(f"    ✘ {exc}")
        except Exception as exc:  # a broken step must not hide the others
            failed += 1
            out(f"    ✘ {type(exc).__name__}: {exc}")
    out("")
    if failed:
        out(f"✘ {failed} of {len(chosen)} steps failed")
    else:
        out(f"✔ all {len(chosen)} steps passed")
    return failed


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
