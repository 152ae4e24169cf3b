"""Long-sequence classification as RNAErnie's lncRNA_H / lncRNA_M classifiers do it.

The original (`LongSeqClsCollator` + `ErnieForLongSequenceClassification` in the official
repository) tokenizes the whole sequence (`[CLS] nt... [SEP]`, no truncation), keeps at most
`max_length` (3072 = 6 chunks) tokens, pads to a whole number of 512-token chunks, inserts
`[SEP] [CLS]` at every chunk boundary and a final `[SEP]` at the end of the last chunk, runs the
classifier on each chunk's pooled output, and averages the logits over chunks (padding-only
positions are masked; they still count as positions of their chunk). `chunk_input_ids` reproduces
that layout for one sequence; `classify_long` runs it around a stock transformers classifier.
"""

from __future__ import annotations

CHUNK = 512
MAX_LENGTH = 6 * CHUNK  # the official lncRNA runs keep at most 6 chunks
MAX_CHUNKED_NUCLEOTIDES = MAX_LENGTH - 2 * (MAX_LENGTH // CHUNK)  # each chunk spends 2 ids on [CLS] and [SEP]


def chunk_input_ids(input_ids: list[int], cls_id: int, sep_id: int, pad_id: int = 0,
                    max_length: int = MAX_LENGTH, chunk: int = CHUNK) -> list[list[int]]:
    """`[CLS] ... [SEP]` ids (untruncated) -> chunks of exactly `chunk` ids, as the original builds them."""
    length = min(len(input_ids), max_length)
    num_chunks = max(1, -(-length // chunk))
    total = num_chunks * chunk
    ids = list(input_ids[:total]) + [pad_id] * (total - min(len(input_ids), total))
    for boundary in range(1, num_chunks):
        ids.insert(boundary * chunk - 1, sep_id)
        ids.insert(boundary * chunk, cls_id)
    ids.insert(total - 1, sep_id)
    ids = ids[:total]
    return [ids[start:start + chunk] for start in range(0, total, chunk)]


def classify_long(model, tokenizer, sequence: str, max_length: int = MAX_LENGTH):
    """Average classifier logits over 512-token chunks; returns a tensor of shape [num_labels].

    `model` is a stock `AutoModelForSequenceClassification` loaded from a converted folder,
    `tokenizer` its `AutoTokenizer`.
    """
    import torch

    body = tokenizer(sequence, add_special_tokens=False)["input_ids"]
    ids = [tokenizer.cls_token_id, *body, tokenizer.sep_token_id]
    chunks = torch.tensor(chunk_input_ids(ids, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                          tokenizer.pad_token_id, max_length))
    with torch.no_grad():
        logits = model(input_ids=chunks, attention_mask=(chunks != tokenizer.pad_token_id).long(),
                       token_type_ids=torch.zeros_like(chunks)).logits
    return logits.mean(dim=0)
