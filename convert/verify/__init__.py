"""Prove parity: the original checkpoint in Paddle vs the converted folder in stock transformers.

`run.verify` checks a folder against its `convert.conversion.Conversion`: the Paddle side
(`paddle_side`, a child process: `convert.paddle_reference` loaded through the safe reader) and the
torch side (`torch_side`: `AutoTokenizer` and `AutoModelFor...` on the folder, as users load it) run
the same probes (`prepare`); every hidden state, the pooler, the logits and the kind's own checks
(`KindCheck`s on its registry entry, e.g. `kind_checks`) are compared (`scoring`), beside the static
checks of the folder's files (`static`: structure, config, tokenizer). The verdict records the
sha256 of every file it vouches for (`convert.records`). What each check proves: docs/verification.md.
This package's own import is light: the names below load their module on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "verify_conversion": "run", "compare": "run", "require_verify_dependencies": "run", "INSTALL_HINT": "run",
    "builtin_probes": "prepare", "read_probe_file": "prepare", "MAX_NUCLEOTIDES": "prepare",
    "STORED_RTOL": "scoring", "summary_table": "scoring", "PARITY_ATOL": "prepare",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
