"""Latency benchmarking of exported models per backend (``detpipe bench``), with Jetson power
mode, clocks and tegrastats power sampling; :func:`detpipe.bench.run.run_bench` is the entry.
"""
