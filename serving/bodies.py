"""Request bodies, read within limits and parsed so that no input can raise past a 400.

- :func:`read_body`: at most ``limit`` bytes, refused from ``Content-Length`` before reading;
- :func:`parse_json`: ``json.loads`` whose every failure is :class:`InvalidInput` — invalid
  UTF-8 or syntax, nesting deeper than the parser's recursion limit (``[[[[...``), integers
  longer than Python's 4300-digit conversion limit;
- :func:`image_from_multipart`: the uploaded file of a ``multipart/form-data`` body
  (``curl -F file=@bus.jpg``), parsed by python-multipart from the bytes already read.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from detpipe.errors import InvalidInput, PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading all of it."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {int(length)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


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
