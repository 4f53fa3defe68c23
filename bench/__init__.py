"""Benchmarks: scripts that print a comparison table against a reference measured in the same
run. Run them as modules from the repository root (``python -m bench.queue``, ``make bench``);
run as files (``python bench/queue.py``) they fix ``sys.path`` first (``bench/_bootstrap.py``).
"""
