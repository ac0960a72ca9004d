"""`python -m atopos.cli`, the same as the `atopos` console script."""

from atopos.cli.main import main

main()
