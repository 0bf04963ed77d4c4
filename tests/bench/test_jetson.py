"""Jetson extras parsed from captured output: tegrastats (Orin, AGX Orin, Xavier NX, Nano), nvpmodel,
jetson_clocks and board detection."""

from __future__ import annotations

import pytest

from detpipe.bench.jetson import (
    jetson_model,
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats_line,
    summarize_power,
)

# Orin Nano / Orin NX, JetPack 6 (L4T 36): units on the rails, GR3D frequency in brackets.
ORIN = (
    "11-22-2024 10:15:32 RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [12%@1510,8%@1510,10%@1510,5%@1510,off,off] EMC_FREQ 12%@2133 GR3D_FREQ 98%@[624] "
    "NVENC off NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@53.25C soc2@51.968C "
    "soc0@52.5C gpu@55.062C tj@55.062C soc1@51.656C "
    "VDD_IN 9871mW/8120mW VDD_CPU_GPU_CV 3911mW/2977mW VDD_SOC 2455mW/2201mW"
)
ORIN_LATER = ORIN.replace("VDD_IN 9871mW/8120mW", "VDD_IN 10129mW/8411mW").replace(
    "GR3D_FREQ 98%@[624]", "GR3D_FREQ 97%@[624]"
)
# AGX Orin: split rails and no VDD_IN; two GPCs in GR3D_FREQ.
AGX_ORIN = (
    "11-22-2024 10:15:32 RAM 5102/30623MB (lfb 6522x4MB) SWAP 0/15311MB (cached 0MB) "
    "CPU [3%@2201,1%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,off,off,off,off] "
    "EMC_FREQ 7%@3199 GR3D_FREQ 99%@[1300,1300] NVENC off NVDEC off NVJPG off NVJPG1 off VIC off "
    "OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cv0@49.187C cpu@50.093C soc2@47.343C "
    "soc0@48.218C cv1@48.593C gpu@52.031C tj@52.031C soc1@47.812C cv2@48.562C "
    "VDD_GPU_SOC 12406mW/11234mW VDD_CPU_CV 1983mW/1867mW VIN_SYS_5V0 5040mW/4938mW "
    "VDDQ_VDD2_1V8AO 1209mW/1154mW"
)
# Xavier NX, JetPack 4.6: rails without units, no brackets.
XAVIER_NX = (
    "RAM 3291/7765MB (lfb 180x4MB) SWAP 0/3883MB (cached 0MB) "
    "CPU [18%@1907,12%@1907,9%@1907,15%@1907,off,off] "
    "EMC_FREQ 21%@1600 GR3D_FREQ 96%@1109 APE 150 MTS fg 0% bg 0% AO@40C GPU@45.5C PMIC@50C AUX@40.5C "
    "CPU@42.5C thermal@42.7C VDD_IN 8512/7954 VDD_CPU_GPU_CV 4102/3711 VDD_SOC 1433/1389"
)
# Jetson Nano, JetPack 4: POM_ rails, a dummy PMIC@100C sensor.
NANO = (
    "RAM 1565/3956MB (lfb 352x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [29%@1479,25%@1479,22%@1479,31%@1479] EMC_FREQ 9%@1600 GR3D_FREQ 99%@921 APE 25 PLL@32C "
    "CPU@35.5C PMIC@100C GPU@33C AO@40C thermal@34.25C POM_5V_IN 5117/4893 POM_5V_GPU 2213/2010 "
    "POM_5V_CPU 853/840"
)


def test_orin_line():
    s = parse_tegrastats_line(ORIN)
    assert s.rails_mw == {"VDD_IN": 9871, "VDD_CPU_GPU_CV": 3911, "VDD_SOC": 2455}
    assert s.input_power_mw == (9871.0, "VDD_IN")
    assert s.temps_c["gpu"] == 55.062 and s.temps_c["tj"] == 55.062 and len(s.temps_c) == 6
    assert (s.gpu_load_pct, s.gpu_freq_mhz, s.ram_used_mb) == (98, 624, 2448)


def test_agx_orin_line_sums_split_rails():
    s = parse_tegrastats_line(AGX_ORIN)
    assert "RAM" not in s.rails_mw and "SWAP" not in s.rails_mw
    assert s.input_power_mw == (12406.0 + 1983 + 5040 + 1209, "sum of rails")
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (99, 1300)
    assert s.temps_c["cv2"] == 48.562


def test_xavier_nx_line_without_units():
    s = parse_tegrastats_line(XAVIER_NX)
    assert s.input_power_mw == (8512.0, "VDD_IN")
    assert s.rails_mw["VDD_SOC"] == 1433
    assert s.temps_c["GPU"] == 45.5 and "PMIC" not in s.temps_c
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (96, 1109)


def test_nano_line_with_pom_rails():
    s = parse_tegrastats_line(NANO)
    assert s.input_power_mw == (5117.0, "POM_5V_IN")
    assert set(s.rails_mw) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}  # not IRAM
    assert "PMIC" not in s.temps_c and s.temps_c["thermal"] == 34.25


def test_summarize_power_mean_watts_and_images_per_watt():
    samples = [parse_tegrastats_line(ORIN), parse_tegrastats_line(ORIN_LATER)]
    power = summarize_power(samples, throughput_ips=200.0)
    assert power.samples == 2 and power.power_source == "VDD_IN"
    assert power.mean_power_w == pytest.approx(10.0)
    assert power.max_power_w == pytest.approx(10.129)
    assert power.images_per_s_per_w == pytest.approx(20.0)
    assert power.max_temp_c == 55.062 and power.hottest_sensor in ("gpu", "tj")
    assert power.mean_gpu_load_pct == pytest.approx(97.5)
    assert not power.thermal_throttling and not power.gpu_clock_dropped


def test_throttling_from_temperature_or_clock_drop():
    hot = parse_tegrastats_line(ORIN.replace("tj@55.062C", "tj@97.5C"))
    assert summarize_power([hot]).thermal_throttling
    assert summarize_power([hot], throttle_c=99.0).thermal_throttling is False
    slowed = parse_tegrastats_line(ORIN.replace("GR3D_FREQ 98%@[624]", "GR3D_FREQ 99%@[510]"))
    power = summarize_power([parse_tegrastats_line(ORIN), slowed])
    assert power.gpu_clock_dropped and power.thermal_throttling


def test_no_power_readings():
    assert summarize_power([parse_tegrastats_line("RAM 1/2MB CPU [1%@100]")]) is None
    assert summarize_power([]) is None


def test_nvpmodel():
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n") == {
        "name": "15W",
        "id": 2,
    }
    assert parse_nvpmodel("NV Power Mode: MODE_30W_ALL") == {"name": "MODE_30W_ALL", "id": None}
    assert parse_nvpmodel("nvpmodel: command not found") is None


CLOCKS_DYNAMIC = """SOC family:tegra234  Machine:NVIDIA Orin Nano Developer Kit
Online CPUs: 0-5
cpu0: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=115200 MaxFreq=1510400 CurrentFreq=729600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=624750000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=2133000000 CurrentFreq=2133000000 FreqOverride=0
FAN Dynamic Speed control=active hwmon1_pwm=52
NV Power Mode: 15W
"""
CLOCKS_LOCKED = """SOC family:tegra234  Machine:NVIDIA Orin Nano Developer Kit
Online CPUs: 0-5
cpu0: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
GPU MinFreq=624750000 MaxFreq=624750000 CurrentFreq=624750000
EMC MinFreq=204000000 MaxFreq=2133000000 CurrentFreq=2133000000 FreqOverride=1
NV Power Mode: 15W
"""


def test_jetson_clocks():
    dynamic = parse_jetson_clocks(CLOCKS_DYNAMIC)
    assert dynamic["locked"] is False
    assert dynamic["clocks"]["GPU"] == {"min": 306000000, "max": 624750000, "current": 306000000}
    assert set(dynamic["clocks"]) == {"cpu0", "cpu1", "GPU", "EMC"}
    assert parse_jetson_clocks(CLOCKS_LOCKED.replace("MinFreq=204000000", "MinFreq=2133000000"))["locked"]
    assert parse_jetson_clocks(CLOCKS_LOCKED)["locked"] is False  # EMC still scales
    assert parse_jetson_clocks("jetson_clocks: must be run as root") is None


def test_jetson_model_detection(tmp_path):
    assert jetson_model(tmp_path) is None
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64\n"
    )
    assert jetson_model(tmp_path) == (
        "NVIDIA Jetson (L4T R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64)"
    )
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert jetson_model(tmp_path) == "NVIDIA Jetson AGX Orin Developer Kit"
