"""The ``handoff`` command line: export, verify, inspect, diff, bench, list, serve."""
