"""Request bodies, read within limits and parsed so that no input can raise past a 400.

- :class:`BodyBudget`: request body bytes held at once, server-wide. :meth:`BodyBudget.read`
  refuses more than the request's ``limit`` from ``Content-Length`` (413) and reserves the
  body's bytes before reading (``Content-Length``, or chunk by chunk without one); beyond
  the budget: 503 with ``Retry-After``. The bytes stay reserved until the request is done::

      async with budget.read(request, limit=8 << 20) as body:
          ...                             # parse, decode, infer
- :func:`parse_json`: ``json.loads`` whose every failure is :class:`InvalidInput` — invalid
  UTF-8 or syntax, nesting deeper than the parser's recursion limit (``[[[[...``), integers
  longer than Python's 4300-digit conversion limit;
- :func:`image_from_multipart`: the uploaded file of a ``multipart/form-data`` body
  (``curl -F file=@bus.jpg``), parsed by python-multipart from the bytes already read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from detpipe.errors import InvalidInput, Overloaded, PayloadTooLarge


class BodyBudget:
    """Request body bytes held at once across the server (one event loop: no lock needed).

    Args:
        limit: the most bytes held at once.
        on_change: called with the bytes held whenever that changes (a gauge).
    """

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.held = 0
        self.on_change = on_change or (lambda n: None)

    def _take(self, n: int) -> None:
        if self.held + n > self.limit:
            raise Overloaded(
                f"server busy: request bodies in flight would exceed {self.limit} bytes; retry shortly"
            )
        self.held += n
        self.on_change(self.held)

    def _give(self, n: int) -> None:
        self.held -= n
        self.on_change(self.held)

    @asynccontextmanager
    async def read(self, request: Request, limit: int, what: str = "request body") -> AsyncIterator[bytes]:
        """The body (at most ``limit`` bytes), reserved in the budget until the block ends.

        Raises:
            PayloadTooLarge: more than ``limit`` bytes (from ``Content-Length``, before reading).
            Overloaded: the budget cannot hold the body now.
        """
        held = 0
        try:
            length = request.headers.get("content-length", "")
            if length.isdigit():
                if int(length) > limit:
                    raise PayloadTooLarge(f"{what} of {int(length)} bytes; the limit is {limit}")
                self._take(int(length))
                held = int(length)
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"{what} over the {limit}-byte limit")
                if size > held:  # no (or a short) Content-Length: reserve as it comes
                    self._take(size - held)
                    held = size
                chunks.append(chunk)
            body = b"".join(chunks)
            del chunks
            yield body
        finally:
            self._give(held)


def parse_json(body: bytes | str, what: str = "body") -> Any:
    """``json.loads`` with every failure as a one-line :class:`InvalidInput`."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise InvalidInput(f"{what}: JSON nested too deeply") from None
    except ValueError as e:  # int() of more than sys.get_int_max_str_digits() digits
        raise InvalidInput(f"{what}: {str(e).split(';')[0]}") from None


async def image_from_multipart(body: bytes, content_type: str, field: str = "file") -> bytes:
    """The bytes of the file uploaded as ``field`` (else the only file) in a multipart body.

    Raises:
        InvalidInput: a malformed body, no file, or several files and none named ``field``.
    """

    async def stream():
        yield body

    parser = MultiPartParser(
        Headers({"content-type": content_type}), stream(), max_files=8, max_fields=16, max_part_size=64 * 1024
    )
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise InvalidInput(f"multipart body: {e.message}") from None
    try:
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        named = [v for k, v in files if k == field]
        if not files:
            raise InvalidInput(f"multipart body has no file: upload the image as {field}=@image.jpg")
        if not named and len(files) > 1:
            raise InvalidInput(f"multipart body has {len(files)} files and none named {field!r}")
        upload = (named or [files[0][1]])[0]
        return await upload.read()
    finally:
        await form.close()
