"""Body caps on the bytes actually received (chunked or not), before anything buffers them."""

from __future__ import annotations

from typing import Callable

from fastapi.responses import JSONResponse

from domain.errors import FieldError
from domain.validation import MAX_DOCUMENT_BYTES
from infra.http.problems import problem_response

MAX_JSON_BODY = 1024 * 1024
MULTIPART_FRAMING = 64 * 1024  # boundaries and part headers around the one `file` part
MAX_UPLOAD_BODY = MAX_DOCUMENT_BYTES + MULTIPART_FRAMING


class BodyCap:
    """Caps a request body on the bytes actually received, chunked or not, before anything buffers it:
    a document plus multipart framing for a multipart upload to one of ``uploads``, 1 MiB for any other.
    Past the cap (or when Content-Length already says so) it answers 413 problem JSON with
    ``Connection: close`` and hands the application a disconnect, so the refused request records
    nothing and nothing the application says after that is sent."""

    def __init__(self, app: Callable, *, uploads: set[str]):
        self.app, self.uploads = app, uploads

    def cap_of(self, path: str, headers: dict) -> tuple[int, Callable[[], JSONResponse]]:
        """The cap of this request's body, and how to make the 413 that refuses it (made only when
        needed: nearly every request is within its cap)."""
        if path in self.uploads and headers.get(b"content-type", b"").startswith(b"multipart/"):
            return MAX_UPLOAD_BODY, _document_too_large
        return MAX_JSON_BODY, _body_too_large

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        cap, refusal = self.cap_of(scope["path"], headers)
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > cap:
            return await refusal()(scope, receive, send)
        received, started, refused = 0, False, False

        async def capped_receive() -> dict:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    if not started and not refused:
                        refused = True
                        await refusal()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def answer(message: dict) -> None:
            nonlocal started
            if refused:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, answer)
        except Exception:
            if not refused:
                raise


def _document_too_large() -> JSONResponse:
    detail = f"documents are at most 25 MB ({MAX_DOCUMENT_BYTES} bytes)"
    return _closing(problem_response(413, "document-too-large", "Document too large", detail,
                                     [FieldError("file", detail)]))


def _body_too_large() -> JSONResponse:
    return _closing(problem_response(413, "body-too-large", "Request body too large",
                                     f"JSON bodies are at most {MAX_JSON_BODY} bytes"))


def _closing(refusal: JSONResponse) -> JSONResponse:
    refusal.headers["connection"] = "close"  # the rest of the body is not read
    return refusal
