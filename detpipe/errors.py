"""One exception hierarchy for detpipe.

Each class knows the exit code the CLI returns for it and the HTTP status the server
answers with; the CLI (``detpipe.cli.main``) and the server map them in one place each.

    >>> raise InvalidInput("annotations.json: not valid JSON (line 3, column 7)")
"""

from __future__ import annotations


class DetpipeError(Exception):
    """Base class: a known failure with a one-line, user-facing reason."""

    exit_code: int = 1
    http_status: int = 500


class InvalidInput(DetpipeError):
    """The caller gave something unusable: a bad file, flag value or request body."""

    exit_code = 2
    http_status = 400


class NotFound(DetpipeError):
    """A file, object, model or release that should exist does not."""

    exit_code = 2
    http_status = 404


class ValidationFailed(InvalidInput):
    """An input file has one or more problems; ``problems`` lists every one of them."""

    def __init__(self, summary: str, problems: list[str]) -> None:
        super().__init__(summary)
        self.problems = problems


class Unavailable(DetpipeError):
    """An optional capability (GPU, TensorRT, a cluster) is not present here."""

    exit_code = 3
    http_status = 503


class GateFailed(DetpipeError):
    """A quality gate (e.g. the export accuracy gate) rejected an artifact."""

    exit_code = 4
    http_status = 409


class StoreError(DetpipeError):
    """The artifact store failed: bad credentials, missing bucket, broken transfer."""

    exit_code = 5
    http_status = 502


class PreconditionFailed(StoreError):
    """A conditional write lost: the object exists (``if_none_match``) or changed since it was read."""

    exit_code = 5
    http_status = 409


class PayloadTooLarge(InvalidInput):
    """A request body, or the number of images in it, is over the server's limit."""

    http_status = 413


class UnsupportedMediaType(InvalidInput):
    """A request body of a content type the endpoint does not take."""

    http_status = 415


class Overloaded(Unavailable):
    """The server's queue is full: the client should retry later (HTTP 503 + Retry-After)."""


class SignatureError(InvalidInput):
    """A release's signature is missing, does not verify, or was made by another key."""


class Unauthorized(InvalidInput):
    """A request without valid credentials for a protected route (HTTP 401 + WWW-Authenticate)."""

    http_status = 401


class Forbidden(InvalidInput):
    """A request this server does not allow, whoever sends it (HTTP 403)."""

    http_status = 403


class EngineIncompatible(Unavailable):
    """A TensorRT engine built for another GPU, TensorRT or JetPack than this device's: this
    device cannot use it, the artifact is not at fault (another device may run it); ``problems``
    lists why. The edge agent reports it as outcome ``incompatible``; loading such an engine
    (``serve``, ``bench``, ``export``'s checks) exits 3 / answers 503. A missing or foreign
    sidecar and an engine whose sha256 is not its sidecar's are :class:`InvalidInput`."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class ReloadRefused(DetpipeError):
    """The local model server did not take a new model; ``status`` is its HTTP answer.

    Only a 400 says the model itself was rejected; any other status (401/403: a missing or
    wrong token, 404: another model name, 5xx) is about the request or the server.
    """

    http_status = 502

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def model_rejected(self) -> bool:
        """Whether the server rejected the model itself (HTTP 400)."""
        return self.status == 400
