"""Fill-mask examples for the model card: the converted model's own top-5 predictions.

The masked-LM entry of `convert.heads` names both functions here: the verifier calls
`fill_mask_examples` with the model and tokenizer it loaded from the output folder and stores the
result in verification.json; the card (`convert.card`) renders it as the Hub's `widget:` metadata
and `card_section` as its fill-mask section. Nothing here is typed by hand except the example sequences.
"""

from __future__ import annotations

EXAMPLES = (  # (title, text with one [MASK]): well-known RNAs, as published RNA model cards show them
    ("HIV-1 TAR", "GGUC[MASK]CUCUGGUUAGACCAGAUCUGAGCCU"),
    ("miR-21", "UAGC[MASK]UAUCAGACUGAUGUUGA"),
)
TOP_K = 5


def fill_mask_examples(model, tokenizer, examples=EXAMPLES, top_k: int = TOP_K) -> list[dict]:
    """For each example, the `top_k` tokens the model predicts at [MASK], with their probabilities.

    Shaped as the Hub's widget metadata: {"text", "example_title", "output": [{"label", "score"}]}.
    Scores are rounded to 4 decimals (what the card shows).
    """
    import torch

    rendered = []
    for title, text in examples:
        batch = tokenizer(text, return_tensors="pt")
        (position,) = (batch["input_ids"][0] == tokenizer.mask_token_id).nonzero()[:, 0].tolist()
        with torch.no_grad():
            probabilities = model(**batch).logits[0, position].float().softmax(-1)
        top = probabilities.topk(top_k)
        output = [{"label": tokenizer.convert_ids_to_tokens(int(token)), "score": round(float(score), 4)}
                  for score, token in zip(top.values, top.indices)]
        rendered.append({"text": text, "example_title": title, "output": output})
    return rendered


def card_section(record: dict, verification: dict | None) -> str:
    """The card section on fill-mask: which tokens can appear, `targets=`, and the computed examples."""
    tokens = record["vocabulary"]["tokens"]
    special = " ".join(f"`{t}`" for t in tokens if t.startswith("["))
    lines = ["", "", "## Fill-mask", "",
             f"The fill-mask pipeline ranks every token of the vocabulary: the nucleotides `A` `C` `G` `U` and the "
             f"special tokens {special}, so a special token can appear among the predictions. To rank nucleotides "
             "only, pass `targets`: `fill(text, targets=[\"A\", \"C\", \"G\", \"U\"])` (scores are then "
             "the same probabilities, restricted to those four)."]
    widget = (verification or {}).get("widget") if (verification or {}).get("verdict") == "pass" else None
    if widget:
        lines += ["", "Top-5 predictions of this model at `[MASK]`, computed by the verifier (also the examples "
                  "of the Hub's widget):", "", "| example | input | predictions |", "|---|---|---|"]
        for example in widget:
            predictions = ", ".join(f"`{p['label']}` {p['score']:.4f}" for p in example["output"])
            lines.append(f"| {example['example_title']} | `{example['text']}` | {predictions} |")
    return "\n".join(lines)
