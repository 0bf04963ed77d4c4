"""Who may reload the served model, and from where.

The repository load route (``POST /v2/repository/models/{name}/load``) is off unless the
server runs with ``--allow-reload`` (403 otherwise); then every call needs
``Authorization: Bearer <token>`` with the token of ``--reload-token-file``, compared in
constant time (401 with ``WWW-Authenticate: Bearer`` otherwise). SIGHUP reloads stay as they
are: only a local user can send one.

What a reload loads must lie under an allowed root:

- ``--model``'s store root, for a release: ``s3://bucket[/prefix]`` for
  ``s3://bucket[/prefix]/models/<name>[/<version>]``, ``STORE`` for a local
  ``STORE/models/<name>[/<version>]``, the directory itself for another release directory.
  Only releases (verified against their manifest and signature) load from a store root;
- for a model file, its directory as given: ``DIR/current`` for ``DIR/current/model.onnx``,
  the OTA agent's active slot. ``DIR/current -> slots/a`` is resolved at each reload, so the
  inactive ``DIR/slots/b`` is outside (loading it would get around TUF's rollback protection);
- each ``--reload-root`` (releases and model files).

Local paths are compared once symlinks and ``..`` are resolved, at reload time, and the
resolved path is what gets loaded; S3 URIs by bucket and key prefix (keys with ``..`` are no
URIs at all). Everything else is refused with one message that tells nothing about the path,
not even whether it exists::

    roots = allowed_roots(cfg.model, cfg.reload_roots)
    target = check_target(uri, roots)   # Forbidden, or what to load
"""

from __future__ import annotations

import hmac
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from detpipe.errors import Forbidden, InvalidInput, Unauthorized
from detpipe.store.uri import StoreURI, parse_uri

REFUSED = "reload refused: the URI is not in a location this server may load from"
RELOAD_OFF = "model control is off: this server was started without --allow-reload"


def read_token(path: Path) -> str:
    """The reload token in ``path`` (surrounding whitespace stripped).

    Raises:
        InvalidInput: the file is unreadable, readable by group or others (``chmod 600``; in
            Kubernetes a Secret volume with ``defaultMode: 0400``), empty or more than one
            word. The message never holds the token.
    """
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise InvalidInput(f"--reload-token-file {path}: cannot read ({reason})") from None
    if stat.S_IMODE(mode) & 0o077:
        raise InvalidInput(
            f"--reload-token-file {path}: readable by group or others (mode {stat.S_IMODE(mode):o}); "
            "chmod 600 it"
        )
    if not token or any(c.isspace() for c in token):
        raise InvalidInput(f"--reload-token-file {path}: expected one token (no spaces), got none or several")
    return token


def check_bearer(authorization: str | None, token: str) -> None:
    """Accept ``Authorization: Bearer <token>`` only, comparing in constant time.

    Raises:
        Unauthorized: no such header, another scheme or another token.
    """
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("reload needs Authorization: Bearer <the token of --reload-token-file>")


@dataclass(frozen=True)
class Root:
    """A location reloads may load from; ``files``: plain model files too, not only releases."""

    uri: StoreURI
    files: bool


def allowed_roots(model: str, extra: Sequence[str] = ()) -> tuple[Root, ...]:
    """``model``'s own root (see the module docstring) and each of ``extra``.

    Raises:
        InvalidInput: a root that is no store URI or path.
    """
    uri = parse_uri(model)
    if uri.scheme == "file" and Path(uri.path).is_file():  # a model file: its directory as given
        own = Root(replace(uri, path=str(Path(uri.path).parent)), files=True)
    else:
        own = Root(_store_root(uri), files=False)
    return (own, *(Root(parse_uri(r), files=True) for r in extra))


def _store_root(uri: StoreURI) -> StoreURI:
    """The store a release URI lives in: what comes before ``models/<name>[/<version>]``."""
    parts = uri.path.rstrip("/").split("/")
    for depth in (1, 2):  # <root>/models/<name>, then <root>/models/<name>/<version>
        if len(parts) > depth and parts[-depth - 1] == "models":
            head = "/".join(parts[: -depth - 1])
            return replace(uri, path=head or ("" if uri.scheme == "s3" else "."))
    return uri


def check_target(target: str, roots: Sequence[Root]) -> str:
    """``target`` when it lies under one of ``roots``; a local path comes back resolved.

    Raises:
        Forbidden: anywhere else, or no valid URI (one message for all: :data:`REFUSED`).
    """
    try:
        uri = parse_uri(target)
    except InvalidInput:
        raise Forbidden(REFUSED) from None
    if uri.scheme == "s3":
        for root in roots:
            if root.uri.scheme == "s3" and root.uri.bucket == uri.bucket and _under(uri.path, root.uri.path):
                return str(uri)
        raise Forbidden(REFUSED)
    path = _resolved(uri.path)
    if path is not None:
        for root in roots:
            base = _resolved(root.uri.path) if root.uri.scheme == "file" else None
            if base is not None and path.is_relative_to(base) and (root.files or not path.is_file()):
                return str(path)
    raise Forbidden(REFUSED)


def _under(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(f"{prefix}/")


def _resolved(path: str) -> Path | None:
    try:
        return Path(path).resolve()
    except (OSError, ValueError, RuntimeError):  # NUL bytes, symlink loops
        return None
