from moe2_cli.cli import main

main()
