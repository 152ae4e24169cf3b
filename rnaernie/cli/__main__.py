"""`python -m rnaernie.cli`: the same as the `rnaernie` console script."""

from rnaernie.cli import main

if __name__ == "__main__":  # importing this module (as the model-side tests do) must not run the command
    main()
