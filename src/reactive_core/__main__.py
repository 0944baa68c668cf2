"""`python -m reactive_core` runs the `reactive` command line."""

from ._cli.main import main

main()
