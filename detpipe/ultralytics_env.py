"""Make ultralytics run offline and quietly for detpipe, from one place.

Call :func:`configure_offline` before using ultralytics (before or after its first import;
before is better, see below). It is idempotent and does nothing at import time::

    from detpipe.ultralytics_env import configure_offline

    configure_offline(Path("runs/demo"))   # or configure_offline() for ~/.cache/detpipe
    from ultralytics import YOLO
    YOLO("yolov8n.yaml").train(data="runs/demo/yolo/dataset.yaml", project="runs/demo/train", ...)

Every place where ultralytics 8.4 could reach the network, and what is done about it:

- Settings and config dir (``utils.get_user_config_dir``): ``YOLO_CONFIG_DIR`` points to
  ``<workdir>/Ultralytics`` (settings.json, fonts), never ``~/.config/Ultralytics``.
- Online probe (``utils.is_online``, DNS lookups at import): ``YOLO_OFFLINE=1`` makes it
  answer False without a lookup; ``ONLINE`` is forced False where it was already computed.
  That also keeps Sentry (``set_sentry``) and the PyPI update check
  (``check_pip_update_available``) off.
- Telemetry (``utils.events``, Google Analytics): settings ``sync=False``; an events
  object that already exists is disabled.
- Platform/hub callbacks (``callbacks.platform``): settings ``api_key=""`` and
  ``ULTRALYTICS_API_KEY`` removed from the environment; the ClearML, Comet, DVC, MLflow,
  Ray Tune, TensorBoard and W&B integrations are switched off in settings.
- Auto-install (``checks.check_requirements``): ``YOLO_AUTOINSTALL=0``; it warns instead
  of running pip.
- Fonts (``checks.check_font``, called by ``check_det_dataset`` and every plot label):
  ``Arial.ttf`` and ``Arial.Unicode.ttf`` in the config dir are copies of matplotlib's
  DejaVuSans.ttf, so the check finds them and never downloads.
- Downloads (``downloads.safe_download``, ``get_github_assets``, ``is_url(check=True)``,
  hence ``attempt_download_asset`` and the CUDA AMP check's ``yolo26n.pt``): remote URLs
  raise ``ConnectionError`` at once, naming the URL; local paths pass through. The AMP
  check catches that error and keeps AMP on without its download.

If ultralytics was imported before the first call, its config dir is already fixed: the
flags above are still applied in memory and the fonts are put there, but that dir's
settings.json is not modified.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
"""The fonts ultralytics checks for (and would download) in its config dir."""

OFFLINE_SETTINGS: dict[str, Any] = {
    "sync": False,
    "api_key": "",
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}


def default_workdir() -> Path:
    """``$XDG_CACHE_HOME/detpipe`` (``~/.cache/detpipe`` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "detpipe"


def configure_offline(workdir: Path | None = None, verbose: bool = False) -> Path:
    """Make ultralytics offline and quiet in this process (and in processes it starts).

    Args:
        workdir: where ultralytics keeps its settings and fonts (``<workdir>/Ultralytics``);
            default :func:`default_workdir`. Only the first call before ultralytics is
            imported decides it.
        verbose: keep ultralytics' INFO messages and progress bars (default: warnings
            only). Its log goes to stderr either way, so stdout stays machine-readable.

    Returns:
        The ultralytics config dir in effect.
    """
    workdir = Path(workdir) if workdir is not None else default_workdir()
    imported = "ultralytics.utils" in sys.modules
    if not imported:
        os.environ["YOLO_CONFIG_DIR"] = str(workdir.absolute())
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    if not imported:
        # ultralytics binds its log handler to sys.stdout at import: bind it to stderr instead
        with contextlib.redirect_stdout(sys.stderr):
            importlib.import_module("ultralytics.utils")
    from ultralytics import utils
    from ultralytics.utils import checks, downloads

    config_dir = Path(utils.USER_CONFIG_DIR)
    _install_fonts(config_dir)
    utils.ONLINE = checks.ONLINE = False
    checks.AUTOINSTALL = False
    ours = Path(os.environ.get("YOLO_CONFIG_DIR", "")) / "Ultralytics"
    if config_dir == ours:
        root = ours.parent
        wanted = {
            **OFFLINE_SETTINGS,
            "datasets_dir": str(root / "datasets"),
            "weights_dir": str(root / "weights"),  # where a local 'yolov8n.pt' would be found
            "runs_dir": str(root / "runs"),  # used only when a run names no project dir
        }
        if any(utils.SETTINGS.get(k) != v for k, v in wanted.items()):
            utils.SETTINGS.update(wanted)  # saved, so child processes (DDP workers) read it too
    else:  # imported before the first call, or our dir was not writable: leave that file alone
        log.warning(
            "ultralytics settings in %s are not detpipe's: overriding them in memory only", config_dir
        )
        dict.update(utils.SETTINGS, OFFLINE_SETTINGS)
    events = sys.modules.get("ultralytics.utils.events")
    if events is not None:
        events.events.enabled = False
    _guard_downloads(downloads)
    _quiet(utils.LOGGER, verbose)
    log.debug("ultralytics offline, config dir %s", config_dir)
    return config_dir


def _install_fonts(config_dir: Path) -> None:
    """Copy matplotlib's DejaVuSans.ttf into ``config_dir`` under the names ultralytics wants."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = config_dir / name
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            tmp = config_dir / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a font


def _is_remote(url: Any) -> bool:
    parsed = urlparse(str(url))
    return bool(parsed.scheme and parsed.netloc)


def _refuse(url: Any) -> ConnectionError:
    return ConnectionError(
        f"detpipe runs ultralytics offline and will not download {url}; "
        "give a local file (e.g. a model YAML or a weights path) instead"
    )


def _guard_downloads(downloads: Any) -> None:
    """Replace the download entry points with offline versions, everywhere they were imported."""
    if getattr(downloads.safe_download, "_detpipe_offline", False):
        return
    originals = {
        "safe_download": downloads.safe_download,
        "get_github_assets": downloads.get_github_assets,
        "is_url": downloads.is_url,
    }

    @functools.wraps(originals["safe_download"])
    def safe_download(url: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_remote(url):
            raise _refuse(url)
        return originals["safe_download"](url, *args, **kwargs)

    @functools.wraps(originals["get_github_assets"])
    def get_github_assets(repo: str = "ultralytics/assets", version: str = "latest", **_: Any) -> Any:
        raise _refuse(f"https://api.github.com/repos/{repo}/releases/{version}")

    @functools.wraps(originals["is_url"])
    def is_url(url: Any, check: bool = False) -> bool:
        return originals["is_url"](url, check=False) and not check  # reachable? not from here

    replacements: dict[str, Callable[..., Any]] = {
        "safe_download": safe_download,
        "get_github_assets": get_github_assets,
        "is_url": is_url,
    }
    for fn in replacements.values():
        fn._detpipe_offline = True  # type: ignore[attr-defined]
    for module in [m for name, m in sys.modules.items() if name.startswith("ultralytics") and m is not None]:
        for name, fn in replacements.items():
            if getattr(module, name, None) is originals[name]:
                setattr(module, name, fn)


def _quiet(logger: logging.Logger, verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logger.setLevel(level)
    for handler in logger.handlers:
        handler.setLevel(level)
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
