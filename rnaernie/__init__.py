"""The PyTorch / transformers side of RNAErnie: config translation, tokenizer, model helpers, embeddings."""

from rnaernie.embedding import Embedder, embed, iter_embed

__all__ = ["Embedder", "embed", "iter_embed"]
