"""Jobs: long work (training, large translations, benchmarks) run as child processes by the scheduler."""
