"""The dashboard's pages: overview, dead letters, exchange log, dossier timeline, sign-in.

Thin handlers: they read what the store and the health monitor already know and render
templates. State changes (replay, discard) go through the same functions as the ops API, so
they are audited the same way, with the operator's client id.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from gateway.audit import chain_status
from gateway.dead_letters import DeadLetters
from gateway.errors import Conflict, NotFound, Unauthenticated
from gateway.health import SystemHealth
from gateway.ops.formatting import VN_TZ, format_duration, format_number, format_time
from gateway.ops.i18n import LANGUAGES, MESSAGES, Language, format_reason, translate
from gateway.ops.sessions import SESSION_COOKIE, OpsSession
from gateway.runtime import Runtime
from gateway.security import Client
from gateway.store.base import AuditQuery
from gateway.timeline import TimelineEntry, dossier_timeline

__all__ = ["CSRF_HEADER", "TEMPLATE_DIR", "routes", "session_credentials"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
LANG_COOKIE = "dvcgw_lang"
#: the sign-in form's CSRF token before there is a session (double-submit cookie): without it
#: another site could post its own key to /ops/login and sign the operator's browser in as
#: its client (login CSRF), so what the operator then does lands under the wrong identity
LOGIN_CSRF_COOKIE = "dvcgw_login_csrf"
_LOGIN_CSRF = re.compile(r"^[A-Za-z0-9_-]{43}$")
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ERROR_FLASHES = frozenset({"not_dead", "csrf_failed", "bad_key", "no_ops_scope", "need_ops_write"})
PAGE = {"login_redirect": "/ops/login", "scopes": ["ops:read"]}
WRITE = {"login_redirect": "/ops/login", "scopes": ["ops:read"], "csrf_form": True}


def _lang(request: Request[Any, Any, Any], runtime: Runtime) -> Language:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGUAGES:
        return asked
    return runtime.settings.ops.default_language


async def _session(request: Request[Any, Any, Any], runtime: Runtime) -> OpsSession | None:
    return await runtime.ops_sessions.get(request.cookies.get(SESSION_COOKIE))


def _client_id(request: Request[Any, Any, Any]) -> str | None:
    user = request.scope.get("user")
    return getattr(user, "id", None)


def _can_write(request: Request[Any, Any, Any]) -> bool:
    user = request.scope.get("user")
    return "ops:write" in getattr(user, "scopes", ())


async def _render(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    name: str,
    page: str,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Template:
    lang = _lang(request, runtime)
    session = await _session(request, runtime)

    def t(key: str) -> str:
        return translate(key, lang)

    def reason(system: SystemHealth) -> str | None:
        """A system's reason in the page's language (the English text if a code is unknown)."""
        return format_reason(system.reason_code, system.reason_args, lang) or system.reason

    def label(entry: TimelineEntry) -> str:
        """A timeline entry in the page's language (operation names stay as they are)."""
        if entry.label_key is None or entry.label_key not in MESSAGES:
            return entry.label
        try:
            return t(entry.label_key).format(**entry.label_args)
        except (KeyError, IndexError, ValueError):
            return entry.label

    def age(seconds: float | None) -> str:
        return format_duration(seconds, lang)

    ctx: dict[str, Any] = {
        "lang": lang,
        "page": page,
        "t": t,
        "reason": reason,
        "label": label,
        "fmt_time": format_time,
        "fmt_num": format_number,
        "fmt_age": age,
        "client_id": _client_id(request) if session else None,
        "csrf_token": session.csrf_token if session else "",
        "can_write": _can_write(request),
        "flash": None,
        "flash_kind": "ok",
        "lang_switch_url": _lang_switch_url(request, "en" if lang == "vi" else "vi"),
    }
    flash = request.query_params.get("flash")
    if flash in MESSAGES:
        ctx["flash"] = t(flash)
        ctx["flash_kind"] = "error" if flash in _ERROR_FLASHES else "ok"
    ctx.update(context)
    cookies = list(cookies or [])
    if request.query_params.get("lang") in LANGUAGES:
        cookies.append(
            Cookie(key=LANG_COOKIE, value=lang, httponly=True, samesite="strict", path="/ops")
        )
    return Template(template_name=name, context=ctx, cookies=cookies)


def _lang_switch_url(request: Request[Any, Any, Any], other: Language) -> str:
    """This page in the other language, its filters kept (the flash message dropped, and a
    citizen ID never copied into a link)."""
    dropped = ("lang", "flash", "citizen_id")
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in dropped]
    return "?" + urlencode([*params, ("lang", other)])


async def session_credentials(connection: ASGIConnection[Any, Any, Any, Any]) -> Client | None:
    """The ops session cookie as a credential (registered with gateway.security)."""
    sid = connection.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    runtime: Runtime = connection.app.state.runtime
    session = await runtime.ops_sessions.get(sid)
    if session is None:
        return None
    if connection.scope.get("method", "GET") not in _SAFE_METHODS:
        # dashboard forms check their hidden token themselves; any other state change made
        # with the cookie (the ops API) must carry the token in a header, or a cookie alone
        # would be enough to replay or discard work
        handler = connection.scope.get("route_handler")
        form = bool(getattr(handler, "opt", {}).get("csrf_form"))
        if not form and not session.csrf_ok(connection.headers.get(CSRF_HEADER)):
            raise Unauthenticated(
                "a state-changing call made with the dashboard session needs its CSRF token "
                f"in the {CSRF_HEADER} header (or use an API key)"
            )
    # scopes come from the directory now: removing a client ends its sessions
    return runtime.clients.get(session.client_id)


# ---------------------------------------------------------------- sign-in / sign-out


@get("/ops/login", opt={"anonymous": True}, include_in_schema=False)
async def login_page(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    nxt = request.query_params.get("next") or "/ops"
    # one token per browser, kept across re-renders (a second tab, a wrong key) so an open
    # form never goes stale
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not _LOGIN_CSRF.match(token):
        token = secrets.token_urlsafe(32)
    cookie = Cookie(
        key=LOGIN_CSRF_COOKIE,
        value=token,
        httponly=True,
        samesite="strict",
        secure=_is_secure(request),
        path="/ops/login",
    )
    return await _render(
        request,
        runtime,
        "login.html",
        "login",
        cookies=[cookie],
        next_url=_safe_next(nxt),
        login_csrf=token,
    )


def _login_csrf_ok(request: Request[Any, Any, Any], presented: str | None) -> bool:
    """The form's hidden token equals the cookie's: a cross-site form can set neither (the
    cookie is SameSite=Strict and HttpOnly, and another site cannot read our page)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    return (
        bool(_LOGIN_CSRF.match(expected))
        and bool(presented)
        and hmac.compare_digest(expected, str(presented))
    )


def _safe_next(value: str) -> str:
    # only local dashboard paths: never an open redirect
    return value if value.startswith("/ops") and "//" not in value else "/ops"


def _is_secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


@post("/ops/login", opt={"anonymous": True}, include_in_schema=False, status_code=303)
async def login_submit(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008
) -> Response[Any]:
    lang = _lang(request, runtime)
    if not _login_csrf_ok(request, data.get("csrf_token")):
        query = urlencode({"flash": "csrf_failed", "lang": lang})
        return Redirect(f"/ops/login?{query}", status_code=303)
    runtime.clients.refresh()
    client = runtime.clients.by_key(data.get("api_key", "").strip())
    if client is None or "ops:read" not in client.scopes:
        flash = "bad_key" if client is None else "no_ops_scope"
        return Redirect(f"/ops/login?{urlencode({'flash': flash, 'lang': lang})}", status_code=303)
    session = await runtime.ops_sessions.create(client.id)
    response: Response[Any] = Redirect(_safe_next(data.get("next", "/ops")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session.sid,
        max_age=runtime.settings.ops.session_ttl_seconds,
        httponly=True,
        samesite="strict",
        secure=_is_secure(request),
        path="/ops",
    )
    # used up: the next sign-in form gets a fresh one
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ops/login")
    return response


@post("/ops/logout", opt=WRITE, include_in_schema=False, status_code=303)
async def logout(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008
) -> Response[Any]:
    session = await _session(request, runtime)
    if session is None or not session.csrf_ok(data.get("csrf_token")):
        lang = _lang(request, runtime)
        return Redirect(f"/ops?flash=csrf_failed&lang={lang}", status_code=303)
    await runtime.ops_sessions.destroy(session.sid)
    response: Response[Any] = Redirect("/ops/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ops")
    return response


# ---------------------------------------------------------------- overview


async def _overview_context(runtime: Runtime) -> dict[str, Any]:
    now = time.time()
    systems = await runtime.health.snapshot()
    queues = await runtime.store.jobs.stats(now=now)
    webhooks = await runtime.events.statuses()
    return {"systems": systems, "queues": queues, "webhooks": webhooks}


@get("/ops", opt=PAGE, include_in_schema=False)
async def overview(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    ctx = await _overview_context(runtime)
    return await _render(request, runtime, "overview.html", "overview", **ctx)


@get("/ops/partials/overview", opt=PAGE, include_in_schema=False)
async def overview_fragment(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    ctx = await _overview_context(runtime)
    return await _render(request, runtime, "_overview.html", "overview", **ctx)


# ---------------------------------------------------------------- dead letters


@get("/ops/dead-letters", opt=PAGE, include_in_schema=False)
async def dead_letters(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    system = request.query_params.get("system") or None
    kind = request.query_params.get("kind") or None
    before = request.query_params.get("before") or None
    found = await DeadLetters(runtime.store, runtime.audit).page(
        system=system, kind=kind, limit=50, before_id=before
    )
    # the system filter reads a bounded window of dead letters: a short page (even an empty
    # one) may still have older matches, and the link carries the search on from the window
    next_link = None
    if found.next_before:
        params = {"system": system or "", "kind": kind or "", "before": found.next_before}
        next_link = "?" + urlencode(params)
    return await _render(
        request,
        runtime,
        "dead_letters.html",
        "dead_letters",
        dead=found.items,
        system=system,
        kind=kind,
        system_names=sorted(runtime.registry.instances),
        next_before=found.next_before,
        next_link=next_link,
    )


async def _dead_letter_action(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    job_id: str,
    action: str,
    form: dict[str, str],
) -> Response[Any]:
    lang = _lang(request, runtime)
    session = await _session(request, runtime)
    if session is None or not session.csrf_ok(form.get("csrf_token")):
        return Redirect(f"/ops/dead-letters?flash=csrf_failed&lang={lang}", status_code=303)
    if not _can_write(request):
        return Redirect(f"/ops/dead-letters?flash=need_ops_write&lang={lang}", status_code=303)
    dead_letters = DeadLetters(runtime.store, runtime.audit)
    try:
        if action == "replay":
            await dead_letters.replay(job_id, actor=session.client_id)
            runtime.jobs.wakeup.set()
            flash = "replayed"
        else:
            await dead_letters.discard(job_id, actor=session.client_id)
            flash = "discarded"
    except (NotFound, Conflict):
        flash = "not_dead"
    return Redirect(f"/ops/dead-letters?flash={flash}&lang={lang}", status_code=303)


@post("/ops/dead-letters/{job_id:str}/replay", opt=WRITE, include_in_schema=False, status_code=303)
async def replay(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    job_id: str,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008
) -> Response[Any]:
    return await _dead_letter_action(request, runtime, job_id, "replay", data)


@post("/ops/dead-letters/{job_id:str}/discard", opt=WRITE, include_in_schema=False, status_code=303)
async def discard(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    job_id: str,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008
) -> Response[Any]:
    return await _dead_letter_action(request, runtime, job_id, "discard", data)


# ---------------------------------------------------------------- exchange log


_LOCAL_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y")


class _BadTime(ValueError):
    pass


def _parse_local(value: str | None) -> float | None:
    """A time typed as ``dd/mm/yyyy [hh:mm[:ss]]`` (or ISO 8601), Vietnam time, to epoch
    seconds. A plain text field, not ``datetime-local``: browsers show that one in the
    office computer's own locale (often mm/dd/yyyy), not in the dashboard's."""
    text = (value or "").strip()
    if not text:
        return None
    for fmt in _LOCAL_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=VN_TZ).timestamp()
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _BadTime(text) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=VN_TZ)).timestamp()


_AUDIT_FILTERS = ("since", "until", "system", "outcome", "request_id", "dossier_code")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@get("/ops/audit", opt=PAGE, include_in_schema=False)
async def audit_log(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    q = request.query_params
    # the form posts a citizen ID (below) and comes back with its keyed digest as ``subject``;
    # an ID put in the URL by hand or by another tool is not used: it is already in the
    # browser's history and the logs, and a search that works that way invites doing it again
    id_in_url = bool((q.get("citizen_id") or "").strip())
    subject = (q.get("subject") or "").strip().lower()
    if not _DIGEST.match(subject):
        subject = ""
    before = q.get("before")
    bad_times: list[str] = []
    times: dict[str, float | None] = {}
    for name in ("since", "until"):
        try:
            times[name] = _parse_local(q.get(name))
        except _BadTime:
            times[name] = None
            bad_times.append(name)
    query = AuditQuery(
        since=times["since"],
        until=times["until"],
        adapter=q.get("system") or None,
        outcome=q.get("outcome") or None,
        request_id=q.get("request_id") or None,
        dossier_code=q.get("dossier_code") or None,
        subject_digest=subject or None,
        before_seq=int(before) if before and before.isdigit() else None,
        limit=100,
    )
    records = await runtime.store.audit.query(query)
    # the periodic full walk is the health monitor's (seconds on a large log); the page
    # checks only the records appended since the last verification
    chain = await chain_status(runtime.store, full_every=math.inf)
    filters = {name: q.get(name) for name in _AUDIT_FILTERS}
    next_before = records[-1].seq if len(records) == query.limit else None
    link_params = {k: v for k, v in filters.items() if v}
    if subject:
        link_params["subject"] = subject
    without_subject = "/ops/audit?" + urlencode(
        {k: v for k, v in link_params.items() if k != "subject"}
    )
    if next_before:
        link_params["before"] = str(next_before)
    return await _render(
        request,
        runtime,
        "audit.html",
        "audit",
        records=records,
        chain=chain,
        f=filters,
        subject=subject,
        without_subject=without_subject,
        bad_times=bad_times,
        system_names=sorted(runtime.registry.instances),
        next_before=next_before,
        next_link="/ops/audit?" + urlencode(link_params),
        **_id_in_url_flash(request, runtime) if id_in_url else {},
    )


def _id_in_url_flash(request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, Any]:
    return {
        "flash": translate("citizen_id_in_url", _lang(request, runtime)),
        "flash_kind": "error",
    }


@post("/ops/audit", opt=WRITE, include_in_schema=False, status_code=303)
async def audit_search(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008
) -> Response[Any]:
    """The filter form. It is posted so a typed citizen ID never lands in a URL (address bar,
    browser history, proxy logs): it comes back as its keyed digest."""
    lang = _lang(request, runtime)
    session = await _session(request, runtime)
    if session is None or not session.csrf_ok(data.get("csrf_token")):
        return Redirect(f"/ops/audit?flash=csrf_failed&lang={lang}", status_code=303)
    params = {k: data[k].strip() for k in _AUDIT_FILTERS if (data.get(k) or "").strip()}
    citizen_id = (data.get("citizen_id") or "").strip()
    if citizen_id:
        params["subject"] = runtime.audit.digest(citizen_id)
    elif _DIGEST.match(data.get("subject") or ""):
        params["subject"] = data["subject"]
    return Redirect("/ops/audit?" + urlencode(params), status_code=303)


# ---------------------------------------------------------------- dossier


@get("/ops/dossier", opt=PAGE, include_in_schema=False)
async def dossier(request: Request[Any, Any, Any], runtime: Runtime) -> Template:
    code = (request.query_params.get("code") or "").strip()
    timeline = await dossier_timeline(runtime.store, code) if code else []
    jobs = await runtime.store.jobs.by_ordering_key(code) if code else []
    return await _render(
        request, runtime, "dossier.html", "dossier", code=code, timeline=timeline, jobs=jobs
    )


static_files = create_static_files_router(
    path="/ops/static", directories=[STATIC_DIR], opt={"anonymous": True}, include_in_schema=False
)

routes: list[ControllerRouterHandler] = [
    login_page,
    login_submit,
    logout,
    overview,
    overview_fragment,
    dead_letters,
    replay,
    discard,
    audit_log,
    audit_search,
    dossier,
    static_files,
]
