"""Studies that chain the stages, presets, reports, the CLI and the benchmarks."""
