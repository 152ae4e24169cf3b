"""The PyTorch / transformers side of RNAErnie: config translation, tokenizer, model helpers."""
