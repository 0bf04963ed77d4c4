"""One --device reader for every stage (detpipe.device): the accepted forms, what ``auto``
becomes, and the CLI's one-line exits for a malformed value (2) or a missing GPU (3)."""

from __future__ import annotations

import pytest

from detpipe.cli.main import main
from detpipe.device import DEVICE_FORMS, gpu_index, parse_device, resolve_device, torch_device
from detpipe.errors import InvalidInput, Unavailable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", ("auto", ())),
        ("CPU", ("cpu", ())),
        ("cuda", ("cuda", ())),
        ("cuda:1", ("cuda", (1,))),
        ("0,2", ("cuda", (0, 2))),
        ("mps", ("mps", ())),
    ],
)
def test_parse(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["bogus", "gpu", "0,0", "1,a", "", "cuda:", "cuda:x"])
def test_parse_rejects(text):
    with pytest.raises(InvalidInput, match=r"expected auto, cpu, cuda, cuda:N|listed twice"):
        parse_device(text)


def test_resolve_on_a_gpu_machine(monkeypatch):
    """The decisions over a two-GPU count (the count itself is torch's, tested below)."""
    monkeypatch.setattr("detpipe.device.cuda_device_count", lambda: 2)
    assert resolve_device("auto") == "0" and resolve_device("cuda") == "0"
    assert resolve_device("auto", single=False) == "0,1" and resolve_device("cuda", single=False) == "0,1"
    assert resolve_device("cuda:1") == "1" and resolve_device("1,0", single=False) == "1,0"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(Unavailable, match="no GPU 2 here"):
        resolve_device("cuda:2")
    with pytest.raises(InvalidInput, match="runs on one device"):
        resolve_device("0,1")
    assert torch_device(resolve_device("cuda:1")) == "cuda:1" and gpu_index("1") == 1


def test_resolve_here():
    """This machine as torch sees it: auto is CPU without CUDA, and a GPU request says so."""
    import torch

    if torch.cuda.is_available():
        assert resolve_device("auto") == "0"
        return
    assert resolve_device("auto") == "cpu" and resolve_device("auto", single=False) == "cpu"
    assert torch_device("cpu") == "cpu"
    for spec in ("cuda", "cuda:0", "0"):
        with pytest.raises(Unavailable, match="CUDA is not available here"):
            resolve_device(spec)


def test_evaluate_bogus_device_is_one_line(tmp_path, capsys):
    (tmp_path / "w.pt").write_bytes(b"")
    (tmp_path / "d.yaml").write_text("val: v\nnames: [a]\n")
    rc = main(["evaluate", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path / "d.yaml"),
               "--out", str(tmp_path / "o"), "--device", "bogus"])  # fmt: skip
    assert rc == 2
    assert capsys.readouterr().err.splitlines() == [
        f"detpipe evaluate: error: --device bogus: expected {DEVICE_FORMS}"
    ]


def test_evaluate_gpu_request_without_gpu_is_exit_3(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "w.pt").write_bytes(b"")
    (tmp_path / "val").mkdir()
    (tmp_path / "gt.json").write_text(
        '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}'
    )
    (tmp_path / "d.yaml").write_text(f"path: {tmp_path}\nval: val\nnames: [a]\nval_annotations: gt.json\n")
    rc = main(["evaluate", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path / "d.yaml"),
               "--out", str(tmp_path / "o"), "--device", "cuda:0"])  # fmt: skip
    assert rc == 3
    assert capsys.readouterr().err.splitlines() == [
        "detpipe evaluate: error: --device cuda:0: CUDA is not available here (use --device cpu or auto)"
    ]


def test_gpu_count_without_torch_asks_the_driver(monkeypatch):
    """The slim GPU serving image has no torch: the count then comes from libcuda itself;
    without libcuda there is no GPU, and torch is not even imported (CPU serving pods)."""
    import ctypes
    import subprocess
    import sys

    from detpipe.device import _driver_device_count, cuda_device_count

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        driver = None
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    if driver is not None:
        assert cuda_device_count() == _driver_device_count(driver)
        return
    assert cuda_device_count() == 0 and resolve_device("auto") == "cpu"  # no driver on this machine
    probe = "import sys; import detpipe.device as d; d.resolve_device('auto'); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "False", res.stderr
