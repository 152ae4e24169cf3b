"""Prove parity: the original checkpoint in Paddle vs the converted folder in stock transformers.

Both sides see the same probe sequences. The Paddle side (`paddle_side`, a child process) is
`convert.paddle_reference`, loaded through the safe reader; the torch side (`torch_side`) is exactly
what users load: `AutoTokenizer` and `AutoModelFor...` on the output folder. Compared: every hidden
state layer by layer, the pooler, and the logits (MLM columns matched by token), at real and padded
positions, plus what the kind adds (see `convert.heads`).

The checks, each named in the record when it fails, and what each proves:
- structure (`static`): every tensor in `model.safetensors` and in each side file is, bit for bit,
  the converter's float32 mapping of the checkpoint cast to the stored dtype; none missing, none extra;
- config (`static`): `config.json` equals the config the converter derives from the checkpoint;
- tokenizer: the folder's tokenizer gives the official ids on every probe.
  These three compare the folder with the converter's own output: they catch a folder changed or
  damaged after conversion, not a wrong mapping (a wrong row gives the same wrong tensor on both sides).
- parity (`scoring`): the float32 mapping, run in stock transformers with the folder's config,
  matches the Paddle reference within the float32 tolerance. The only check that tests the mapping
  itself, against the original network. When the folder keeps the dropped `[IND]` and class-token
  rows aside (`type_guided.safetensors`), parity also covers what they feed: the prompt
  `[CLS] seq [IND] <class> [SEP]` with every class token, and, for the pre-trained model, the type
  probabilities after `[IND]` on every probe, the rows read from the file as `rnaernie` reads them.
  For a float16/bfloat16 folder the folder as stored is run as well ("stored parity"), against a
  tolerance calibrated from measured rounding error.
The verdict records the sha256 of every file it vouches for (`binding`), so a folder changed after
verification is not taken for a verified one.

Modules: `prepare` (the probes and what both sides need and give back), `kind_checks`, `static`, `paddle_side`, `torch_side`,
`scoring` (differences, verdict, summary), `binding`, `run` (`verify_conversion`). This package's
own import is light: the names below load their module on first use.
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
