"""qbench across runs, models and machines: CI gate, history, run diff, sweeps."""
