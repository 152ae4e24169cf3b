"""The model card (`README.md` of the output folder), from the conversion and verification records.

Every number in the card comes from those records: what was read, what was written, and what
the verifier measured. No network, no heavy imports.
"""

from __future__ import annotations

import json
import re

PAPER = "https://doi.org/10.1038/s42256-024-00836-4"
OFFICIAL_REPO = "https://github.com/CatIIIIIIII/RNAErnie"
TAGS = ("rna", "biology", "rnaernie", "ernie", "paddlepaddle-conversion")


def card_metadata(record: dict, verification: dict | None) -> dict:
    """YAML metadata for the Hub (rendered as YAML by `_yaml`; read back with huggingface_hub.ModelCard).

    A verified masked-LM folder also gets `widget:` examples: the fill-mask outputs the verifier
    computed with the converted model (`convert.widget`).
    """
    verified = bool(verification and verification.get("verdict") == "pass")
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": _head(record).pipeline_tag,
        "license": "mit",
        "tags": list(TAGS) + (["parity-verified"] if verified else ["unverified"]),
    }
    if verified and verification.get("widget"):
        metadata["widget"] = verification["widget"]
    return metadata


def _yaml(metadata: dict) -> str:
    """The card's YAML block, written as huggingface_hub's ModelCardData renders it (the push step
    re-renders it with that class; the two agree, so the folder's README.md is not rewritten).
    Handles what the card holds: strings, rounded floats, lists of them, and lists of such mappings."""
    def scalar(value) -> str:
        if isinstance(value, float):
            return repr(value)  # scores are rounded to 4 decimals: never in exponent form
        if re.fullmatch(r"[A-Za-z][\w.-]*(?:[ \[\]][\w.\[\]-]+)*", value):
            return value  # plain, as PyYAML writes it (brackets inside a word are fine in block style)
        if re.fullmatch(r"\[[A-Z]+\]", value):
            return f"'{value}'"  # a special token: PyYAML single-quotes a leading bracket
        return json.dumps(value)

    def block(value, indent: str) -> list[str]:
        """`value` (a list or mapping) as block YAML lines, each starting with `indent`."""
        if isinstance(value, dict):
            lines = []
            for key, item in value.items():
                if isinstance(item, (list, dict)):
                    lines += [f"{indent}{key}:", *block(item, indent)]
                else:
                    lines.append(f"{indent}{key}: {scalar(item)}")
            return lines
        lines = []
        for item in value:
            if isinstance(item, dict):
                first, *rest = block(item, indent + "  ")
                lines += [f"{indent}- {first.lstrip()}", *rest]
            else:
                lines.append(f"{indent}- {scalar(item)}")
        return lines

    return "\n".join(block(metadata, ""))


def _head(record: dict):
    """The registry entry of the kind the folder was converted as (by `Kind`: two kinds may share a class)."""
    from convert.heads import head_of

    return head_of(record["head"])


def _parity(verification: dict | None) -> str:
    if not verification:
        return ("**Not verified.** The verifier did not run for this folder (Paddle was not installed or "
                "`--no-verify` was passed), so parity with the original has not been measured. Run "
                "`rnaernie-convert CHECKPOINT THIS_FOLDER --verify-only` to measure it.")
    if "layers" not in verification:  # the verification could not finish: no figures
        return f"**Verification FAILED.** {verification.get('failure') or 'It did not finish.'}"
    verdict = "passed" if verification["verdict"] == "pass" else "**FAILED**"
    lines = [
        f"Verification {verdict}: the original Paddle model (rebuilt from `paddle.nn` with PaddleNLP's numerics) "
        f"and this folder loaded with stock `transformers` were run on {verification['probe']['sequences']} "
        f"probe sequences ({verification['probe']['min_length']}-{verification['probe']['max_length']} nt, "
        f"batched with padding), tolerance atol={verification['atol']:g}.",
        "",
        "| output | max abs diff | max rel diff |",
        "|---|---|---|",
    ]
    for row in verification["layers"]:
        if row.get("problem"):
            lines.append(f"| {row['name']} | {row['problem']} | |")
        else:
            lines.append(f"| {row['name']} | {row['max_abs']:.2e} | {row['max_rel']:.2e} |")
    if "masked_argmax_agreement" in verification:
        lines += ["", f"Argmax agreement at masked positions: {verification['masked_argmax_agreement']:.1%}."]
    checks = verification.get("checks")  # records written before the checks existed have none
    if checks:
        lines += ["", "Checks: " + ", ".join(f"{name.replace('_', ' ')} {'passed' if check['passed'] else '**FAILED**'}"
                                           for name, check in checks.items())
                  + " (structure: every stored tensor is bit for bit the float32 mapping of the checkpoint cast to "
                    "the stored dtype; config: `config.json` is the one derived from the checkpoint)."]
    if verification.get("failure"):
        lines += ["", f"Failure: {verification['failure']}"]
    return "\n".join(lines)


def _left_out(record: dict) -> str:
    if not record.get("left_out"):
        return ""
    return (f"\n- The source also held {', '.join(f'`{k}`' for k in record['left_out'])} "
            f"({record.get('left_out_reason', 'no transformers equivalent')}); it was not converted.")


def _type_guided_role(record: dict):
    """The folder's part in type-guided classification (a `convert.heads.TypeGuidedRole`), None without a side file."""
    return _head(record).type_guided if record.get("type_guided") else None


def _dropped_rows(record: dict) -> str:
    """Where the dropped rows went: the side file, or (folders converted before it existed) nowhere."""
    side = record.get("type_guided")
    if side:
        role = _type_guided_role(record)
        which = "the input embedding's `[IND]` and class-token rows" + (role.more_kept_rows if role else "")
        return (f" Their rows ({which}) are kept aside, as stored (float32), in `{side['file']}`, with the class "
                "names in the original order; `from_pretrained` does not read that file, RNAErnie's type-guided "
                "classification does (see below).")
    if "type_guided" in record:  # a vocabulary without [IND] or class tokens: nothing was dropped to keep
        return ""
    return (" Their rows were not kept: the pre-training prompt (`[CLS] seq [IND] <class> [SEP]`) and the "
            "type-guided classification cannot run with this folder; convert the checkpoint again with the current "
            "rnaernie-convert to keep them.")


# The card's word on each part in type-guided classification, by `convert.kinds.TypeGuidedRole` value (not the
# enum itself: the push imports this module and must not pay for the registry).
_ROLE_TEXT = {
    "indicator": """This is the pre-trained model RNAErnie uses as its type indicator: after `[IND]` it names the likely
ncRNA classes of a sequence. With the `rnaernie` command (`pip install rnaernie-convert`):

```bash
rnaernie types MODEL sequences.fa -o types.json --top-k 3
rnaernie classify CLASSIFIER sequences.fa -o labels.json --two-stage MODEL
```

`types.json` gives, for each sequence, the probability of every class token and the top k renormalised to
sum 1, as the official code computes them. `--two-stage` runs a classifier fine-tuned with type guidance
once for each of those classes and weights its logits by their probabilities (the official `MajorityVoter`).""",
    "classifier": """A classifier fine-tuned with RNAErnie's type guidance reads `[CLS] seq [IND] <class> [SEP]`, once for each
class the pre-trained model names, and weights its logits by their probabilities. With the `rnaernie`
command (`pip install rnaernie-convert`), INDICATOR being the converted pre-trained RNAErnie:

```bash
rnaernie classify MODEL sequences.fa -o labels.json --two-stage INDICATOR --top-k 3
rnaernie classify MODEL sequences.fa -o labels.json --long chunk   # without type guidance
```""",
}

_DEVIATION = """Long sequences: the official nRC pipeline pads every batch to 512 positions, so a sequence of up to
508 nucleotides always gets `[CLS] seq [IND] <slot> [SEP]`, whatever it is batched with; a longer one has no
room, and its `[IND]` is written over its own nucleotide at position 509. Here every sequence is cut to its
first 508 nucleotides, so it always gets the layout with room."""


def _type_guided(record: dict) -> str:
    """The card section on RNAErnie's type-guided classification, for the kinds that take part in it."""
    role = _type_guided_role(record)
    if role is None:
        return ""
    return f"## Type-guided classification\n{_ROLE_TEXT[role.value]}\n\n{_DEVIATION}\n\n"


def structure_model_section(record: dict, verification: dict | None) -> str:
    """The structure model's section (`convert.mixedfold`): what the folder holds beyond the encoder, and the
    figures of its verifier check when there are some."""
    backbone = record.get("backbone") or {}
    rows = [row for row in (verification or {}).get("layers", []) if row["name"].startswith("structure: ")]
    measured = [row["max_abs"] for row in rows if row.get("max_abs") is not None]
    figures = (f" Verified against the official network rebuilt in Paddle on the probes: {len(rows)} outputs (every "
               f"positional score, the loop-length tables, the Turner tables as loaded), largest difference "
               f"{max(measured):.2g}; the Turner tables are bit for bit the checkpoint's (structure check)."
               if measured and len(measured) == len(rows) else "")
    return f"""

## The secondary-structure model
This folder is RNAErnie's secondary-structure model (the official `MixedFold`, mxfold2's design), converted
with the pre-trained checkpoint that feeds it (`{backbone.get('file', '?')}`, sha256
`{backbone.get('sha256', 'unknown')}`). Stock `transformers` loads that encoder (`AutoModel`);
`mixedfold.safetensors` holds the network (which turns the encoder's hidden states into positional folding
scores) and the Turner-2004 tables, under torch's module names, with its settings in the file's metadata.
`rnaernie fold MODEL input.fa -o structures.dbn` (`pip install 'rnaernie-convert[structure]'`) runs encoder,
network and our folding engine as the official code does.{figures}"""


# The card's word on a kind beyond its registry entry's `card_section`, by `convert.kinds.Kind` value (the
# registry's modules cannot import this one, which reads the registry).
_KIND_SECTIONS = {"structure-model": structure_model_section}


def _kind_section(record: dict, verification: dict | None) -> str:
    own = _KIND_SECTIONS.get(record["head"])
    return _head(record).card_section(record, verification) + (own(record, verification) if own else "")


def _decided(record: dict) -> str:
    return f" ({record['head_decided_by']})" if record.get("head_decided_by") else ""


def render_card(record: dict, verification: dict | None) -> str:
    source = record["source"]
    official = ("This is the official RNAErnie release (sha256 matches the one published for "
                "`BERT,ERNIE,MOTIF,PROMPT/model_state.pdparams`)." if source.get("is_official_release")
                else "The sha256 does not match the official release's: this is a different or fine-tuned checkpoint.")
    cfg = record["paddle_config"]
    dropped = record["vocabulary"]["dropped"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(record["versions"].items()))
    if verification:
        versions += ", " + ", ".join(f"{k} {v}" for k, v in sorted(verification.get("versions", {}).items())
                                     if k not in record["versions"])
    return f"""---
{_yaml(card_metadata(record, verification))}
---

# RNAErnie ({record['architecture']}), converted to PyTorch / transformers

RNAErnie is an RNA language model (ERNIE 1.0 architecture, {cfg['num_hidden_layers']} layers, hidden size
{cfg['hidden_size']}, {cfg['num_attention_heads']} heads, `{cfg['hidden_act']}` activation) pre-trained with
PaddlePaddle on ncRNA sequences ([paper]({PAPER}), [official repository]({OFFICIAL_REPO})).
This folder is the same network as a stock `transformers` `{record['architecture']}`: no custom code,
no `trust_remote_code`.

## What the conversion changed
- The vocabulary keeps {len(record['vocabulary']['tokens'])} tokens ({' '.join(record['vocabulary']['tokens'])})
  and drops {len(dropped)}: `[IND]` and the ncRNA class tokens.{_dropped_rows(record)}
- `T` is spelled `U`; the tokenizer reads `T`, `U`, `t` and `u` alike, one token per nucleotide,
  `[CLS] ... [SEP]`, anything else (`N`, `-`, IUPAC codes) is `[UNK]`, whitespace is ignored, and at
  most 510 nucleotides fit (`truncation=True`).
- Paddle's `[PAD]` embedding output is zero (padding_idx), so the input `[PAD]` row is zero here, while
  the MLM decoder keeps the stored row; the two are not tied (`tie_word_embeddings: false`).
- LayerNorm epsilon is 1e-12 everywhere, as PaddleNLP sets it when it builds the model.
- Weights are stored as `{record['dtype']}`.{_left_out(record)}

## Usage
{_head(record).usage}
(`MODEL` is this repository's id or local path.) When you batch sequences of different lengths, pass the
tokenizer's `attention_mask`: the original masks `[PAD]` automatically, transformers does not.{_kind_section(record, verification)}

{_type_guided(record)}## Parity with the original
{_parity(verification)}

## Provenance
- Source: `{source['file']}` ({source['bytes']:,} bytes), sha256 `{source.get('sha256', 'unknown')}`. {official}
- Config: `{source['config_file']}` (PaddleNLP); found a {record.get('head_description', record['head'])}{_decided(record)}; {record['tensors']} tensors,
  {record['parameters']:,} parameters.
- Converted by rnaernie-convert {record['tool_version']} on {record['date']} ({versions}).

## Citation
Wang, N. et al. Multi-purpose RNA language modelling with motif-aware pretraining and type-guided
fine-tuning. *Nature Machine Intelligence* 6, 548-557 (2024). {PAPER}
The original weights are released under the MIT licence by the RNAErnie authors.
"""
