"""Commands over the library: train (CoOp's train.py), results tables, plots, benchmarks,
the dataset layout checker and the demo. Each module with a ``main`` is a console command
(see setup.py) and runs with ``python -m e2mim_tools.<module>``."""
