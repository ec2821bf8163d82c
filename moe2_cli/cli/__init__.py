"""The command line: the typer app, one module per command group, and the renderers."""

from moe2_cli.cli.app import app

__all__ = ["app"]
