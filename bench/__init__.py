"""Benchmarks (installed as fastmotion.bench): the runner behind `fastmotion bench` and pytest-benchmark
cases that share its closures. Measured tables live in bench/RESULTS.md."""
