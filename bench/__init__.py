"""Benchmarks of fileops-daemon: ``make bench`` runs ``bench/run.py``."""
