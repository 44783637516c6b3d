"""The pages: submit, watch live, result, history, memory, dead letters; and the images and event stream they use.

Starlette with Jinja2 templates (autoescape on: every prompt, snippet, answer and model output is untrusted text
and reaches the page escaped). Pages are scoped by user in the address (`/u/{user}/...`): a page never shows a
record of another user than the one in its address, and `ui.auth` decides which users' addresses a visitor may
open. Everything the pages do to the system goes through `ui.services.Services` (or a fake of it in tests).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from schemas.records import REQUEST_ID_PATTERN, USER_ID_PATTERN
from ui import forms, views
from ui.auth import AuthMiddleware, Principal
from ui.services import Refused, image_url, letter_view, result_url

HERE = Path(__file__).parent
PER_PAGE = 12
_USER = re.compile(USER_ID_PATTERN)
_REQUEST = re.compile(REQUEST_ID_PATTERN)
# No inline script or style anywhere: even markup that slipped past escaping could not run.
CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(image_url=image_url, result_url=result_url, age=views.age, source_of=views.source_of,
                             quote=lambda s: quote(s or "", safe=""))


class SecurityHeaders:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
            await send(message)

        await self.app(scope, receive, with_headers)


def _principal(request: Request) -> Principal:
    return request.scope.get("state", {}).get("principal") or Principal("open")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    principal = _principal(request)
    user = context.get("user") or principal.user_id or _remembered_user(request)
    return templates.TemplateResponse(request, name, {"principal": principal, "nav_user": user, **context},
                                      status_code=status)


def _remembered_user(request: Request) -> Optional[str]:
    user = request.cookies.get("gs_user", "")
    return user if _USER.fullmatch(user) else None


def _error(request: Request, status: int, message: str) -> Response:
    return _page(request, "error.html", status=status, message=message)


def _scoped_user(request: Request) -> str:
    """The user in the address, if this visitor may see that user's pages; raises `_Denied` otherwise."""
    user = request.path_params["user"]
    if not _USER.fullmatch(user):
        raise _Denied(404, "no such user")
    if not _principal(request).may_see(user):
        raise _Denied(403, "your token does not open this user's pages")
    return user


class _Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def build_app(services: Any, *, token: Optional[str] = None, extra_hosts: tuple[str, ...] = ()) -> Starlette:
    """The ASGI app over `services` (a `ui.services.Services` or a fake with the same methods)."""

    async def submit_page(request: Request) -> Response:
        principal = _principal(request)
        # A user token submits only as its user; the operator (or a loopback page without a token) as anyone.
        user = (request.query_params.get("user") or _remembered_user(request) or "") if principal.operator \
            else principal.user_id or ""
        values = {"user_id": user, "parent_request_id": request.query_params.get("follow", ""), "drafts": "",
                  "max_rounds": ""}
        return _page(request, "submit.html", values=values, errors={})

    async def submit(request: Request) -> Response:
        form = await request.form()
        request_record, errors = forms.parse_request(form)
        principal = _principal(request)
        if request_record is not None and not principal.may_see(request_record.user_id):
            request_record, errors = None, {"user_id": "your token is for another user"}
        if request_record is None:
            return _page(request, "submit.html", status=400, values=forms.form_values(form), errors=errors)
        await services.submit(request_record)
        response = RedirectResponse(result_url(request_record.user_id, request_record.request_id), status_code=303)
        response.set_cookie("gs_user", request_record.user_id, httponly=True, samesite="strict")
        return response

    async def request_page(request: Request) -> Response:
        user = _scoped_user(request)
        request_id = request.path_params["request_id"]
        if not _REQUEST.fullmatch(request_id):
            return _error(request, 404, "no such request")
        result = await services.result(request_id)
        if result is not None and result.user_id != user:
            return _error(request, 404, "no such request for this user")  # never another user's record
        question = await services.question(request_id)
        resuming = (result is not None and result.status == "needs_clarification"
                    and question is not None and question[0] == "answered")
        if result is None or resuming or request.query_params.get("watch"):
            if question is not None and question[1] != user:
                return _error(request, 404, "no such request for this user")
            return _page(request, "live.html", user=user, request_id=request_id, resuming=resuming,
                         events_url=result_url(user, request_id) + "/events")
        return _page(request, "result.html", user=user, result=result, question_state=question and question[0],
                     checks=views.checks_of(result), rounds=views.prompt_rounds(result),
                     timings=views.stage_timings(result.timings), best=views.best_uri(result),
                     answer_errors={}, answer_text="")

    async def events(request: Request) -> Response:
        from sse_starlette.sse import EventSourceResponse

        user = _scoped_user(request)
        request_id = request.path_params["request_id"]
        if not _REQUEST.fullmatch(request_id):
            return PlainTextResponse("no such request", status_code=404)
        result = await services.result(request_id)
        if result is not None and result.user_id != user:
            return PlainTextResponse("no such request for this user", status_code=404)
        question = await services.question(request_id)
        resuming = question is not None and question[0] == "answered" and result is not None \
            and result.status == "needs_clarification"
        finished = result is not None and not resuming
        channel = services.channel(request_id)
        if channel is None and not finished:
            channel = await services.follow(request_id)
            # A result that landed before the channel existed never reached it: look once more.
            again = await services.result(request_id)
            if again is not None and again.user_id == user and (again.status != "needs_clarification"
                                                                 or not resuming):
                result, finished = again, True
        if channel is not None and finished and not any(e["stage"] == "result" and e.get("user") == user
                                                        for e in channel.events):
            channel = None  # nothing more will come through it: the result alone tells the page where to go
        last = request.headers.get("last-event-id", "")
        after = int(last) if last.isdigit() else -1  # a reconnecting browser resumes after what it has

        async def stream() -> Any:
            if channel is None:
                yield {"event": "result", "data": json.dumps({"stage": "result", "status": result.status if result
                                                              else "", "url": result_url(user, request_id),
                                                              "text": ""})}
                return
            async for event in channel.follow(after):
                if event is None or event.get("user") != user:
                    continue  # keep-alives are sse-starlette's pings; another user's request shows nothing here
                yield {"event": "result" if event["stage"] == "result" else "stage", "id": str(event["seq"]),
                       "data": json.dumps(event)}

        return EventSourceResponse(stream(), ping=15)

    async def answer(request: Request) -> Response:
        user = _scoped_user(request)
        request_id = request.path_params["request_id"]
        form = await request.form()
        text = str(form.get("answer", "") or "")
        record, errors = forms.parse_answer(request_id, user, text)
        if record is not None:
            try:
                await services.answer(record)
            except Refused as exc:
                errors = {"answer": str(exc)}
        if errors:
            result = await services.result(request_id)
            if result is None or result.user_id != user:
                return _error(request, 404, "no such request for this user")
            question = await services.question(request_id)
            return _page(request, "result.html", status=400, user=user, result=result,
                         question_state=question and question[0], checks=views.checks_of(result),
                         rounds=views.prompt_rounds(result), timings=views.stage_timings(result.timings),
                         best=views.best_uri(result), answer_errors=errors, answer_text=text)
        return RedirectResponse(result_url(user, request_id) + "?watch=1", status_code=303)

    async def result_json(request: Request) -> Response:
        user = _scoped_user(request)
        result = await services.result(request.path_params["request_id"])
        if result is None or result.user_id != user:
            return JSONResponse({"error": "no such result for this user"}, status_code=404)
        return JSONResponse(json.loads(result.model_dump_json()))

    async def history(request: Request) -> Response:
        user = _scoped_user(request)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        results, total = await services.history(user, page, PER_PAGE)
        pages = max(1, -(-total // PER_PAGE))
        return _page(request, "history.html", user=user, results=results, page=page, pages=pages, total=total,
                     best_uri=views.best_uri)

    async def memory(request: Request) -> Response:
        user = _scoped_user(request)
        items = await services.memory_items(user)
        return _page(request, "memory.html", user=user, items=items, notice=request.query_params.get("notice"))

    async def forget(request: Request) -> Response:
        user = _scoped_user(request)
        form = await request.form()
        item_id = str(form.get("item_id", "") or "") or None
        if item_id is None and form.get("confirm") != "yes":
            items = await services.memory_items(user)
            return _page(request, "memory.html", status=400, user=user, items=items,
                         notice="tick the confirmation box to forget everything")
        removed = await services.forget(user, item_id)
        notice = f"forgot {removed} item(s)" + ("" if item_id else " and this page's history of your results")
        return RedirectResponse(f"/u/{quote(user, safe='')}/memory?notice={quote(notice)}", status_code=303)

    def _operator_only(request: Request) -> None:
        if not _principal(request).operator:
            raise _Denied(403, "dead letters are for the operator's token")

    async def dead_letters(request: Request) -> Response:
        _operator_only(request)
        letters = [letter_view(lt) for lt in await services.dead_letters()]
        return _page(request, "dead_letters.html", letters=letters, notice=request.query_params.get("notice"))

    async def replay(request: Request) -> Response:
        _operator_only(request)
        form = await request.form()
        letter_id = str(form.get("letter_id", "") or "")
        try:
            topic = await services.replay(letter_id)
            notice = f"replayed {letter_id} to {topic}"
        except Refused as exc:
            notice = str(exc)
        return RedirectResponse(f"/dead-letters?notice={quote(notice)}", status_code=303)

    async def image(request: Request) -> Response:
        try:
            data, kind = await services.image(request.query_params.get("uri", ""))
        except Refused:
            return PlainTextResponse("no such image", status_code=404)
        return Response(data, media_type=kind, headers={"cache-control": "private, max-age=3600"})

    async def go(request: Request) -> Response:
        user = request.query_params.get("user", "")
        where = request.query_params.get("to", "history")
        if not _USER.fullmatch(user) or where not in ("history", "memory"):
            return _error(request, 400, "give a user id (letters, digits or _ . @ -)")
        return RedirectResponse(f"/u/{quote(user, safe='')}/{where}", status_code=303)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Denied)
        return _error(request, exc.status, str(exc))

    routes = [
        Route("/", submit_page), Route("/submit", submit, methods=["POST"]),
        Route("/u/{user}/r/{request_id}", request_page),
        Route("/u/{user}/r/{request_id}/events", events),
        Route("/u/{user}/r/{request_id}/answer", answer, methods=["POST"]),
        Route("/api/u/{user}/r/{request_id}", result_json),
        Route("/u/{user}/history", history), Route("/u/{user}/memory", memory),
        Route("/u/{user}/memory/forget", forget, methods=["POST"]),
        Route("/dead-letters", dead_letters), Route("/dead-letters/replay", replay, methods=["POST"]),
        Route("/image", image), Route("/go", go), Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={_Denied: denied}, middleware=[
        Middleware(SecurityHeaders), Middleware(AuthMiddleware, token=token, extra_hosts=extra_hosts)])
