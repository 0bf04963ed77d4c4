"""configure_offline: ultralytics, in a fresh interpreter, touches no socket and keeps stdout clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

SCRIPT = r"""
import json, os, sys
from pathlib import Path

sockets = []
sys.addaudithook(lambda event, args: sockets.append(event) if event.startswith("socket.") else None)

from detpipe.ultralytics_env import configure_offline

workdir = Path(sys.argv[1])
first = configure_offline(workdir)
FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
fonts_mtime = [(first / n).stat().st_mtime_ns for n in FONTS]
second = configure_offline(workdir / "elsewhere")  # idempotent: the first call fixed the config dir

from ultralytics import YOLO, utils
from ultralytics.utils import checks, downloads
from ultralytics.utils.events import events

out = {
    "dirs": [str(first), str(second)],
    "fonts_unchanged": fonts_mtime == [(first / n).stat().st_mtime_ns for n in FONTS],
    "online": [utils.ONLINE, checks.ONLINE, utils.is_online()],
    "events": events.enabled,
    "settings": {k: utils.SETTINGS[k] for k in ("sync", "api_key", "wandb", "mlflow", "weights_dir")},
    "api_key_env": os.environ.get("ULTRALYTICS_API_KEY"),
    "fonts": [str(checks.check_font(n)) for n in FONTS],
    "requirements": checks.check_requirements("detpipe-no-such-package==1.0"),
    "yaml_model": type(YOLO("yolov8n.yaml").model).__name__,
}
downloads_tried = {
    "asset": lambda: downloads.attempt_download_asset("yolo26n.pt"),
    "weights": lambda: YOLO("yolov8n.pt"),
}
for key, call in downloads_tried.items():
    try:
        call()
        out[key] = "downloaded?"
    except ConnectionError as e:
        out[key] = str(e)
out["url_check"] = downloads.is_url("https://github.com/ultralytics/assets", check=True)
out["sockets"] = sockets
print(json.dumps(out))
"""


def test_offline_in_a_fresh_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ULTRALYTICS_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), ULTRALYTICS_API_KEY="ul_" + "0" * 40)
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).parents[1],
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout  # ultralytics logs to stderr, never to stdout
    out = json.loads(lines[0])
    config = tmp_path / "work" / "Ultralytics"
    assert out["dirs"] == [str(config), str(config)]
    assert out["fonts_unchanged"] is True
    assert out["online"] == [False, False, False]
    assert out["events"] is False
    assert out["settings"] == {
        "sync": False,
        "api_key": "",
        "wandb": False,
        "mlflow": False,
        "weights_dir": str(tmp_path / "work" / "weights"),
    }
    assert out["api_key_env"] is None
    assert out["fonts"] == [str(config / "Arial.ttf"), str(config / "Arial.Unicode.ttf")]
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert (config / "Arial.ttf").read_bytes() == dejavu.read_bytes()
    assert out["requirements"] is False  # missing, and not pip-installed
    assert out["yaml_model"] == "DetectionModel"
    base = "https://github.com/ultralytics/assets/releases/download/v8.4.0"
    assert out["asset"].startswith(
        f"detpipe runs ultralytics offline and will not download {base}/yolo26n.pt"
    )
    assert out["weights"].startswith(
        f"detpipe runs ultralytics offline and will not download {base}/yolov8n.pt"
    )
    assert out["url_check"] is False
    assert out["sockets"] == []  # no DNS lookup, no connection, not even the online probe
    settings = json.loads((config / "settings.json").read_text())
    assert (settings["sync"], settings["api_key"], settings["clearml"]) == (False, "", False)
    assert not (tmp_path / "home" / ".config" / "Ultralytics").exists()  # the user config is untouched


LATE = r"""
import json, sys
from pathlib import Path

from ultralytics import utils  # imported first: its config dir is already the user's
from ultralytics.utils import downloads
from ultralytics.utils.events import events
from detpipe.ultralytics_env import configure_offline

before = json.loads(Path(utils.SETTINGS.file).read_text())
config = configure_offline(Path(sys.argv[1]))
try:
    downloads.safe_download("https://example.com/weights.pt", file="weights.pt")
    refused = False
except ConnectionError:
    refused = True
print(json.dumps({
    "config": str(config),
    "in_memory": [utils.SETTINGS["sync"], utils.ONLINE, events.enabled],
    "file_unchanged": json.loads(Path(utils.SETTINGS.file).read_text()) == before,
    "fonts": sorted(p.name for p in config.glob("*.ttf")),
    "refused": refused,
}))
"""


def test_after_ultralytics_was_imported(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ULTRALYTICS_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), YOLO_OFFLINE="1")  # no DNS probe here
    res = subprocess.run(
        [sys.executable, "-c", LATE, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).parents[1],
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    assert out["config"] == str(tmp_path / "home" / ".config" / "Ultralytics")
    assert out["in_memory"] == [False, False, False]
    assert out["file_unchanged"] is True  # the user's settings.json keeps sync=True
    assert out["fonts"] == ["Arial.Unicode.ttf", "Arial.ttf"]
    assert out["refused"] is True
    assert "are not detpipe's: overriding them in memory only" in res.stderr
    assert not (tmp_path / "work").exists()
