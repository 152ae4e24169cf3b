"""The model side of RNAErnie: what a user of a converted folder needs at run time.

Loading it with stock transformers (`rnaernie.model`), embeddings (`rnaernie.embedding`),
classification, type-guided and of long sequences (`rnaernie.classify`, `rnaernie.type_guided`,
`rnaernie.long_sequence`), and the `rnaernie` command (`rnaernie.cli`). It imports nothing of the
converter (`convert/`) or Paddle; the config translation and the tokenizer are written by the converter.
"""

from rnaernie.embedding import Embedder, embed, iter_embed

__all__ = ["Embedder", "embed", "iter_embed"]
