"""Transfers: readouts from frozen source representations into every target (``engine``, ``readout``),
the higher-order beam of source sets (``beam``), where readouts run (``executors``, local or Ray), and
the one-process-per-pair reference the benchmark and tests compare against (``naive``)."""
