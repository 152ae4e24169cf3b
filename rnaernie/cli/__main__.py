"""`python -m rnaernie.cli`: the same as the `rnaernie` console script."""

from rnaernie.cli import main

main()
