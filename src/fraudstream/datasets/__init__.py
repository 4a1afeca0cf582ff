"""Datasets: the synthetic traffic generator, public dataset adapters, and file I/O."""
