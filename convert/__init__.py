"""rnaernie-convert: the official RNAErnie Paddle checkpoint -> a stock Hugging Face folder.

Python API (heavy libraries are imported only by the functions that need them):

    from convert.pipeline import convert_checkpoint
    result = convert_checkpoint("model_state.pdparams", "out/")

Errors: every bad input raises `convert.errors.ConversionError` (exit code 2 in the CLI);
a failed parity check raises `convert.errors.ParityError` (exit code 1).
"""

__version__ = "0.1.0"
