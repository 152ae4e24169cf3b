"""The `rnaernie` typer app. Commands live one per module (`rnaernie/cli/<command>.py`) and register
themselves on `app`; what all console scripts share (`run_guarded`, `err`) is in `rnaernie.console`.
Heavy libraries (numpy, torch, transformers) are imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

from rnaernie.console import new_app

app = new_app(help="Work with a converted RNAErnie folder: embeddings, type-guided classification.")


@app.callback()
def _root() -> None:
    """Work with a converted RNAErnie folder. Exit codes: 0 success, 2 bad input or usage."""
