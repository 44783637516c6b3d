"""`python -m cli …`: the `gapstream` command from a checkout, without the installed entry point."""

from cli.main import main

main()
