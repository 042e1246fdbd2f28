"""``python -m synthgen``: the command line of :mod:`synthgen.cli`."""

from synthgen.cli import main

main()
