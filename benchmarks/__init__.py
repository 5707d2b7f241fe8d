"""Speed and memory measurements; results are recorded in docs/benchmarks.md."""
