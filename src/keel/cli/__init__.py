"""The ``keel`` command line (Typer + Rich); the only place that knows about terminals."""
