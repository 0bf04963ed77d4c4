"""The CLI's one error mapping: OSErrors and non-UTF-8 input end in exit 2 and ONE line
naming the file, never a traceback. Each failure is provoked for real (a path under a regular
file, a read-only file system, a full tmpfs, a file-size limit, a non-UTF-8 list file)."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from detpipe.cli.main import main, os_error_line
from detpipe.errors import InvalidInput
from detpipe.export.calib import calibration_images


def _one_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"detpipe {command}: error: "), err
    return lines[0]


@pytest.fixture
def coco_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny COCO ground truth and results file (evaluate --gt/--dt runs in a fraction of a second)."""
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 64}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "box"}],
    }
    dt = [{"image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.9}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return tmp_path / "gt.json", tmp_path / "dt.json"


def test_out_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc = main(["data", "synth", "--out", str(tmp_path / "afile" / "ds"), "--images", "2"])
    assert rc == 2
    assert _one_line(capsys, "data").endswith(f"{tmp_path / 'afile'}: exists and is not a directory")


def test_out_on_a_read_only_file_system(capsys):
    target = Path("/sys/detpipe-cli-test")  # sysfs: nobody, root included, creates files there
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this machine")
    rc = main(["data", "synth", "--out", str(target), "--images", "2"])
    assert rc == 2
    line = _one_line(capsys, "data")
    assert line.startswith(f"detpipe data: error: {target}: ")
    assert line.endswith(("Operation not permitted", "Permission denied", "Read-only file system"))


def test_disk_full(tmp_path, coco_pair, capsys):
    """A 1 MiB tmpfs filled to the last byte: the metrics file's write() fails with ENOSPC."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        with (disk / "filler").open("wb") as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        gt, dt = coco_pair
        rc = main(["evaluate", "--gt", str(gt), "--dt", str(dt), "--out", str(disk / "metrics.json")])
        assert rc == 2
        assert _one_line(capsys, "evaluate").endswith(f"{disk / 'metrics.json'}: No space left on device")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # the temp file is gone
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_file_size_limit(tmp_path, coco_pair):
    """RLIMIT_FSIZE (SIGXFSZ ignored): write() fails with EFBIG, which names no file; the CLI names it."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    gt, dt = coco_pair
    out = tmp_path / "metrics.json"
    r = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "evaluate", "--gt", gt, "--dt", dt, "--out", out],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"detpipe evaluate: error: {out}: File too large"]
    assert not out.exists()


def test_out_is_a_directory(tmp_path, capsys):
    (tmp_path / "taken.yaml").mkdir()
    rc = main(["pipeline", "compile", "--pipeline", "train_to_edge", "--out", str(tmp_path / "taken.yaml")])
    assert rc == 2
    assert _one_line(capsys, "pipeline").endswith(f"{tmp_path / 'taken.yaml'}: Is a directory")
    assert [p.name for p in tmp_path.iterdir()] == ["taken.yaml"]  # no temp file left


def test_out_in_a_directory_that_cannot_hold_files(capsys):
    """/proc/self accepts no new files: the library's FileNotFoundError names the destination."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this machine")
    rc = main(["pipeline", "compile", "--pipeline", "train_to_edge", "--out", "/proc/self/x.yaml"])
    assert rc == 2
    assert (
        _one_line(capsys, "pipeline")
        == "detpipe pipeline: error: /proc/self/x.yaml: No such file or directory"
    )


def test_non_utf8_val_list(tmp_path, capsys):
    (tmp_path / "val.txt").write_bytes(b"./images/a.jpg\n\xff\xfe./images/b.jpg\n")
    (tmp_path / "gt.json").write_text("{}")
    (tmp_path / "w.pt").write_bytes(b"")
    (tmp_path / "d.yaml").write_text(
        f"path: {tmp_path}\nval: val.txt\nnames: [box]\nval_annotations: gt.json\n"
    )
    rc = main(
        [
            "evaluate",
            "--weights",
            str(tmp_path / "w.pt"),
            "--data",
            str(tmp_path / "d.yaml"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2
    assert _one_line(capsys, "evaluate").endswith(
        f"{tmp_path / 'val.txt'}: not UTF-8 text (byte 0xff at offset 15)"
    )
    assert not (tmp_path / "out").exists()


def test_non_utf8_calibration_list(tmp_path):
    (tmp_path / "train2017_5_p.txt").write_bytes(b"\xe9t\xe9.jpg\n")
    with pytest.raises(InvalidInput, match=r"train2017_5_p.txt: not UTF-8 text \(byte 0xe9 at offset 0\)"):
        calibration_images(tmp_path / "train2017_5_p.txt")


def test_os_error_line_forms():
    assert os_error_line(IsADirectoryError(21, "Is a directory", "/a/.m.tmp", None, "/a/m")) == (
        "/a/.m.tmp -> /a/m: Is a directory"
    )
    assert os_error_line(PermissionError(13, "Permission denied", "/etc/x")) == "/etc/x: Permission denied"
    assert os_error_line(ConnectionResetError(104, "Connection reset by peer")) == "Connection reset by peer"


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """``detpipe ... | grep -q``: the reader closes the pipe early; the command stops with the
    shell's SIGPIPE status and no error line (before: "error: Broken pipe", exit 2)."""
    cmd = [sys.executable, "-m", "detpipe.cli.main", "recommend", "--platform", "orin-nx", "--fps", "30",
           "--sensor", "thermal", "--classes", "4", "--images", "6000", "--out", "rec"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # before the command writes: every write it makes hits a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + signal.SIGPIPE, err
    assert err == "", err
