"""The agent's call to the local server's model-load route (``detpipe serve --allow-reload``).

::

    request_reload("http://127.0.0.1:8080/v2/repository/models/yolo/load",
                   Path("/var/lib/detpipe-edge/current/model.onnx"), Path("/etc/detpipe/reload-token"))

The token is read from its file at each call (a rotated token is picked up) and sent as
``Authorization: Bearer``; it never appears in a message or log line. An error status is a
:class:`~detpipe.errors.ReloadRefused` carrying it (only 400 means the model itself was
rejected); a server that does not answer at all is logged and passed over: it loads
``current`` when it starts.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from detpipe.errors import InvalidInput, ReloadRefused

log = logging.getLogger(__name__)


def read_token(path: Path) -> str:
    """The reload token in ``path`` (surrounding whitespace stripped).

    Raises:
        InvalidInput: the file is unreadable, empty or holds more than one word (the message
            never holds the token).
    """
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise InvalidInput(f"--reload-token-file {path}: cannot read ({reason})") from None
    if not token or any(c.isspace() for c in token):
        raise InvalidInput(f"--reload-token-file {path}: expected one token (no spaces), got none or several")
    return token


def request_reload(
    url: str, model_path: Path, token_file: Path | None = None, timeout_s: float = 120.0
) -> None:
    """``POST url`` with ``{"parameters": {"uri": model_path}}``: the server loads ``model_path``.

    Raises:
        ReloadRefused: the server answered with an error status (``status``), or the token
            file went bad (``status`` 0).
    """
    headers = {"Content-Type": "application/json"}
    if token_file is not None:
        try:
            headers["Authorization"] = f"Bearer {read_token(token_file)}"
        except InvalidInput as e:
            raise ReloadRefused(str(e), 0) from None
    body = json.dumps({"parameters": {"uri": str(model_path)}}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("error", "")
        except (ValueError, AttributeError):
            detail = ""
        raise ReloadRefused(f"server reload refused (HTTP {e.code}): {detail}", e.code) from None
    except OSError as e:  # not running (yet): it loads `current` when it starts
        log.warning("server not reachable at %s (%s): it loads %s when it starts", url, e, model_path)
        return
    log.info("server reloaded %s", model_path)
