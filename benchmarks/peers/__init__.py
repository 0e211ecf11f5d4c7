"""flowcore beside other libraries: ``make bench-peers`` (see run.py)."""
