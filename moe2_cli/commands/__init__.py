"""The command-line commands, one module per command group; ``moe2_cli.cli`` mounts them."""
