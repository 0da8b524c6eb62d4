"""``python -m texlens``: the CLI where the ``texlens`` script is not installed (a bare
GPU machine running from a source checkout, for example)."""

from texlens.cli import main

main()
