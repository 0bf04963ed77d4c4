"""Jetson extras for the benchmark: detection, power mode, clocks, tegrastats power/temperature.

Everything that reads the device is a thin wrapper around a pure parser, so the parsers are
tested on captured output without a Jetson::

    if (model := jetson_model()) is not None:
        mode = parse_nvpmodel(run_quiet(["nvpmodel", "-q"]))            # {'name': 'MAXN', 'id': 0}
        clocks = parse_jetson_clocks(run_quiet(["jetson_clocks", "--show"]))
        with TegrastatsSampler(interval_ms=100) as sampler:
            ...timed loop...
        power = summarize_power(sampler.samples, throughput_ips=412.0)

Power rails in tegrastats: newer L4T (Orin, JetPack 5/6) prints ``VDD_IN 5101mW/5101mW``
(instant/average, mW), older L4T (Nano, TX2, Xavier on JetPack 4) prints
``POM_5V_IN 3474/3474`` or ``VDD_IN 4327/4327`` without units. The board input is
``VDD_IN`` or ``POM_5V_IN``; where neither exists (AGX Orin/Xavier split rails) the sum of
all rails is used and reported as such.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
DUMMY_SENSORS = ("PMIC",)  # reports a constant 100C on Xavier/Nano: not a temperature
DEFAULT_THROTTLE_C = 95.0  # a few degrees under Jetson's software-throttling trip points

_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_GR3D = re.compile(r"GR3D_FREQ (\d+)%(?:@\[?(\d+)(?:,\d+)*\]?)?")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_FREQ = re.compile(r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)")


@dataclass(frozen=True)
class TegrastatsSample:
    """One tegrastats line: power rails (mW, instantaneous), temperatures (C), GPU load."""

    rails_mw: dict[str, int]
    temps_c: dict[str, float]
    gpu_load_pct: int | None = None
    gpu_freq_mhz: int | None = None
    ram_used_mb: int | None = None
    t: float = 0.0  # monotonic seconds when read (0 for parsed text)

    @property
    def input_power_mw(self) -> tuple[float, str] | None:
        """Board input power and the rail it came from (or 'sum of rails')."""
        for rail in INPUT_RAILS:
            if rail in self.rails_mw:
                return float(self.rails_mw[rail]), rail
        if self.rails_mw:
            return float(sum(self.rails_mw.values())), "sum of rails"
        return None


def parse_tegrastats_line(line: str, t: float = 0.0) -> TegrastatsSample:
    """Parse one tegrastats line (Orin, Xavier, Nano/TX2 formats)."""
    rails = {name: int(now) for name, now, _avg in _RAIL.findall(line) if name not in ("RAM", "SWAP", "IRAM")}
    temps = {name: float(v) for name, v in _TEMP.findall(line) if name not in DUMMY_SENSORS}
    gpu = _GR3D.search(line)
    ram = _RAM.search(line)
    return TegrastatsSample(
        rails_mw=rails,
        temps_c=temps,
        gpu_load_pct=int(gpu.group(1)) if gpu else None,
        gpu_freq_mhz=int(gpu.group(2)) if gpu and gpu.group(2) else None,
        ram_used_mb=int(ram.group(1)) if ram else None,
        t=t,
    )


@dataclass(frozen=True)
class PowerSummary:
    """Power and thermals over a benchmark run."""

    samples: int
    power_source: str
    mean_power_w: float
    max_power_w: float
    images_per_s_per_w: float | None
    max_temp_c: float | None
    hottest_sensor: str | None
    mean_gpu_load_pct: float | None
    gpu_clock_dropped: bool
    thermal_throttling: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_power(
    samples: list[TegrastatsSample],
    throughput_ips: float | None = None,
    throttle_c: float = DEFAULT_THROTTLE_C,
) -> PowerSummary | None:
    """Mean/max board power, images/s per watt, hottest sensor and a throttling flag.

    The throttling flag is set when any sensor reaches ``throttle_c`` or when the GPU clock
    fell more than 10 % below its highest observed value while the GPU was busy (> 50 %).
    Returns None when no sample has a power reading.
    """
    powered = [(s, p) for s in samples if (p := s.input_power_mw) is not None]
    if not powered:
        return None
    watts = np.array([p[0] for _, p in powered]) / 1e3
    source = powered[0][1][1]
    temps = [(v, k) for s in samples for k, v in s.temps_c.items()]
    max_temp, hottest = max(temps) if temps else (None, None)
    loads = [s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]
    busy_freqs = [s.gpu_freq_mhz for s in samples if s.gpu_freq_mhz and (s.gpu_load_pct or 0) > 50]
    dropped = bool(busy_freqs) and min(busy_freqs) < 0.9 * max(busy_freqs)
    mean_w = float(watts.mean())
    return PowerSummary(
        samples=len(powered),
        power_source=source,
        mean_power_w=mean_w,
        max_power_w=float(watts.max()),
        images_per_s_per_w=throughput_ips / mean_w if throughput_ips and mean_w > 0 else None,
        max_temp_c=max_temp,
        hottest_sensor=hottest,
        mean_gpu_load_pct=float(np.mean(loads)) if loads else None,
        gpu_clock_dropped=dropped,
        thermal_throttling=bool((max_temp is not None and max_temp >= throttle_c) or dropped),
    )


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q`` -> ``{'name': 'MAXN', 'id': 0}`` (id None when not printed)."""
    m = re.search(r"NV Power Mode:\s*(.+)", text)
    if not m:
        return None
    after = text[m.end() :].split()
    mode_id = int(after[0]) if after and after[0].isdigit() else None
    return {"name": m.group(1).strip(), "id": mode_id}


def parse_jetson_clocks(text: str) -> dict[str, Any] | None:
    """``jetson_clocks --show`` -> per-clock min/max/current and whether clocks are locked.

    Locked means every reported CPU, the GPU and the EMC run with MinFreq == MaxFreq (what
    ``jetson_clocks`` sets).
    """
    clocks: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        m = _FREQ.search(line)
        if not m:
            continue
        name = line.split()[0].rstrip(":")
        clocks[name] = {"min": int(m.group(1)), "max": int(m.group(2)), "current": int(m.group(3))}
    if not clocks:
        return None
    relevant = [c for n, c in clocks.items() if n.startswith("cpu") or n in ("GPU", "EMC")]
    return {"locked": bool(relevant) and all(c["min"] == c["max"] for c in relevant), "clocks": clocks}


def jetson_model(root: str | Path = "/") -> str | None:
    """The Jetson board name, or None when this is not a Jetson.

    Reads ``/proc/device-tree/model`` ('NVIDIA Jetson AGX Orin Developer Kit'); falls back
    to ``/etc/nv_tegra_release`` ('R36 (release), REVISION: 3.0 ...').
    """
    root = Path(root)
    model = root / "proc/device-tree/model"
    if model.is_file():
        text = model.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
        if "jetson" in text.lower() or "nvidia" in text.lower():
            return text
    release = root / "etc/nv_tegra_release"
    if release.is_file():
        first = release.read_text(errors="replace").splitlines()[:1]
        return f"NVIDIA Jetson (L4T {first[0].lstrip('# ').strip()})" if first else "NVIDIA Jetson"
    return None


def run_quiet(cmd: list[str], timeout: float = 10.0) -> str:
    """stdout+stderr of ``cmd``, or '' when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return res.stdout + res.stderr


def jetson_info() -> dict[str, Any] | None:
    """Board, power mode and clock state of this Jetson (None elsewhere)."""
    model = jetson_model()
    if model is None:
        return None
    clocks = parse_jetson_clocks(run_quiet(["jetson_clocks", "--show"]))
    return {
        "model": model,
        "power_mode": parse_nvpmodel(run_quiet(["nvpmodel", "-q"])),
        "clocks_locked": clocks["locked"] if clocks else None,  # None: jetson_clocks needs root
        "clocks": clocks["clocks"] if clocks else None,
    }


@dataclass
class TegrastatsSampler:
    """Run ``tegrastats --interval N`` in the background and collect parsed samples.

    A context manager; outside a Jetson (no tegrastats) it collects nothing and says why.
    """

    interval_ms: int = 100
    samples: list[TegrastatsSample] = field(default_factory=list)
    unavailable: str | None = None
    _proc: Any = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> TegrastatsSampler:
        exe = shutil.which("tegrastats")
        if exe is None:
            self.unavailable = "tegrastats not found"
            return self
        try:
            self._proc = subprocess.Popen(
                [exe, "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError as e:
            self.unavailable = f"tegrastats failed to start: {e}"
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            self.samples.append(parse_tegrastats_line(line, time.monotonic()))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            if self._thread is not None:
                self._thread.join(timeout=5)
