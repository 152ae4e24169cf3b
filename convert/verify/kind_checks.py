"""Verifier comparisons only some kinds have, each a `convert.kinds.KindCheck` on its registry entry (the
interaction model's is `convert.interaction.InteractionCheck`). Light to import: the registry imports it.

- `LongSequenceCheck`: a 1300-nt probe in three 512-token chunks whose logits the official code averages;
  the folder runs it through `rnaernie.long_sequence.classify_long`.
- `TypeGuidedCheck` (folders keeping the dropped `[IND]` and class-token rows in `type_guided.safetensors`):
  `[CLS] seq [IND] <class> [SEP]` with every class token, and for the indicator the type probabilities
  after `[IND]`, the rows read from the side file as `rnaernie` does (float32: the float32 run only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from convert.kinds import FolderModel, PaddleModel

LONG_SEQUENCE_LOGITS = "long-sequence logits"
TYPE_GUIDED_HIDDEN = "type-guided hidden states"
TYPE_GUIDED_LOGITS = "type-guided logits"
TYPE_PROBABILITIES = "type probabilities"
TYPE_GUIDED_PROBE_NUCLEOTIDES = 7  # the longest probe the type-guided checks use (3 of the 9 built-in ones):
# the kept rows read the same at any length, and every token costs both sides time (about a fifth of the
# default command went to these prompts at 25 nt)


class LongSequenceCheck:
    """The official 512-token chunked mode of the lncRNA classifiers: mean logits over the chunks."""

    name = "long-sequence"
    outputs = (LONG_SEQUENCE_LOGITS,)
    stored_too = True  # reads only the main weights: a half-precision folder is also run as stored

    def inputs(self, setup: Any) -> dict:
        import numpy as np

        from convert.vocabulary import official_input_ids
        from rnaernie.long_sequence import chunk_input_ids

        vocab = setup.conversion.vocabulary
        sequence = "".join(np.random.default_rng(7).choice(list("ACGU"), size=1300))  # three 512-token chunks
        ids = official_input_ids(sequence, vocab, max_nucleotides=10**9)
        return {"sequence": sequence, "chunks": np.asarray(chunk_input_ids(ids, vocab.id("[CLS]"), vocab.id("[SEP]"))),
                "kept": np.asarray(vocab.kept_source_ids)}

    def run_paddle(self, inputs: dict, paddle: PaddleModel) -> dict[str, list[np.ndarray]]:
        from convert.paddle_reference import run_reference

        chunks = inputs["kept"][inputs["chunks"]]  # in source ids
        return {LONG_SEQUENCE_LOGITS: [run_reference(paddle.encoder, paddle.head, chunks).logits.mean(axis=0)]}

    def run_torch(self, inputs: dict, folder: FolderModel) -> dict[str, list[np.ndarray]]:
        from rnaernie.long_sequence import classify_long

        return {LONG_SEQUENCE_LOGITS: [classify_long(folder.model, folder.tokenizer, inputs["sequence"]).numpy()]}


@dataclass(frozen=True)
class PromptSet:
    """`[CLS] body [IND] <class> [SEP]` rows: one class token per body (converted-vocabulary ids)."""

    bodies: list[list[int]]
    classes: list[str]


@dataclass(frozen=True)
class TypeGuidedInputs:
    """Inputs that reach every kept row. `prompt_sets`: every class token on the shortest probe, then each
    short probe with one class in turn (two padded batches). `bodies` (indicator only): every probe with an
    empty slot. The `source_` fields: the same prompts in source ids, as the Paddle side runs them."""

    prompt_sets: list[PromptSet]
    bodies: list[list[int]]
    source_prompts: list[np.ndarray]  # one array per prompt set
    source_slot_prompts: np.ndarray | None  # `[CLS] body [IND] [PAD] [SEP]` rows (indicator only)
    slots: np.ndarray | None  # each slot row's slot position
    class_source_ids: tuple[int, ...]
    reads_prompt_logits: bool  # a classifier fine-tuned with type guidance: its logits on the prompts


class TypeGuidedCheck:
    """The kept `[IND]` and class-token rows, compared through what they feed (see the module docstring)."""

    name = "type-guided"
    outputs = (TYPE_GUIDED_HIDDEN, TYPE_GUIDED_LOGITS, TYPE_PROBABILITIES)
    stored_too = False

    def inputs(self, setup: Any) -> TypeGuidedInputs | None:
        side_record = setup.conversion.record.get("type_guided")
        if not side_record:
            return None  # converted before the side file existed, or a vocabulary without [IND]
        role = setup.conversion.detection.head.type_guided
        # the kept rows read the same at any length: short probes reach them all, at a small cost
        bodies = [ids[1:-1] for ids in setup.encoded if len(ids) - 2 <= TYPE_GUIDED_PROBE_NUCLEOTIDES]
        classes = tuple(side_record["class_tokens"])
        shortest = min(range(len(bodies)), key=lambda i: len(bodies[i]))
        prompt_sets = [PromptSet([bodies[shortest]] * len(classes), list(classes)),
                       PromptSet(bodies, [classes[i % len(classes)] for i in range(len(bodies))])]
        slot_bodies = bodies if role is not None and role.reads_slot_probabilities else []
        vocab = setup.conversion.vocabulary
        source_slot_prompts = slots = None
        if slot_bodies:
            source_slot_prompts, slots = source_prompts(vocab, slot_bodies, [None] * len(slot_bodies))
        return TypeGuidedInputs(prompt_sets, slot_bodies,
                                [source_prompts(vocab, prompt.bodies, prompt.classes)[0] for prompt in prompt_sets],
                                source_slot_prompts, slots, tuple(vocab.class_source_ids),
                                role is not None and role.reads_prompt_logits)

    def run_paddle(self, inputs: TypeGuidedInputs, paddle: PaddleModel) -> dict[str, list[np.ndarray]]:
        import numpy as np

        from convert.paddle_reference import run_reference

        out: dict[str, list[np.ndarray]] = {TYPE_GUIDED_HIDDEN: []}
        for prompts in inputs.source_prompts:
            ref = run_reference(paddle.encoder, paddle.head, prompts)
            out[TYPE_GUIDED_HIDDEN].append(ref.hidden_states[-1])
            if inputs.reads_prompt_logits:
                out.setdefault(TYPE_GUIDED_LOGITS, []).append(ref.logits)
        if inputs.source_slot_prompts is not None:
            logits = run_reference(paddle.encoder, paddle.head, inputs.source_slot_prompts).logits
            scores = logits[np.arange(len(inputs.slots)), inputs.slots][:, list(inputs.class_source_ids)]
            scores = scores.astype(np.float64)  # the official code puts -inf in the other columns
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[TYPE_PROBABILITIES] = [scores / scores.sum(axis=1, keepdims=True)]
        return out

    def run_torch(self, inputs: TypeGuidedInputs, folder: FolderModel) -> dict[str, list[np.ndarray]]:
        """The kept rows as users reach them: read from the side file by `rnaernie.type_guided`."""
        import torch

        from rnaernie.type_guided import TypeIndicator, make_prompt, prompt_batch, prompt_inputs
        from rnaernie.type_guided_rows import read_type_guided_rows

        model, tokenizer = folder.model, folder.tokenizer
        rows = read_type_guided_rows(folder.out_dir)
        ind = torch.from_numpy(rows.input_ind)
        out: dict[str, list[np.ndarray]] = {TYPE_GUIDED_HIDDEN: []}
        for prompt in inputs.prompt_sets:
            slot_rows = torch.from_numpy(rows.input_classes[[rows.class_index(token) for token in prompt.classes]])
            ids, slots, _ = prompt_batch([make_prompt(tokenizer, body) for body in prompt.bodies],
                                         tokenizer.pad_token_id)
            with torch.no_grad():
                embeds, attention = prompt_inputs(model, ids, slots, ind, slot_rows, tokenizer.pad_token_id)
                result = model(inputs_embeds=embeds, attention_mask=attention,
                               token_type_ids=torch.zeros_like(attention), output_hidden_states=True)
            out[TYPE_GUIDED_HIDDEN].append(result.hidden_states[-1].numpy())
            if inputs.reads_prompt_logits:
                out.setdefault(TYPE_GUIDED_LOGITS, []).append(result.logits.numpy())
        if inputs.bodies:
            indicator = TypeIndicator(tokenizer, model, rows)
            prompts = [make_prompt(tokenizer, body) for body in inputs.bodies]
            out[TYPE_PROBABILITIES] = [indicator.probabilities_of_prompts(prompts).numpy()]
        return out


def source_prompts(vocab, bodies: list[list[int]], slots: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """`[CLS] body [IND] <slot> [SEP]` in source ids, padded with [PAD] (an empty slot is [PAD] too, which the
    reference hides from attention as PaddleNLP does); and each row's slot position."""
    import numpy as np

    kept = vocab.kept_source_ids
    pad = kept[vocab.id("[PAD]")]
    ids = np.full((len(bodies), max(len(b) for b in bodies) + 4), pad, dtype=np.int64)
    for row, (body, slot) in enumerate(zip(bodies, slots)):
        slot_id = pad if slot is None else vocab.source_tokens.index(slot)
        ids[row, : len(body) + 4] = [kept[vocab.id("[CLS]")], *(kept[i] for i in body), vocab.ind_source_id,
                                     slot_id, kept[vocab.id("[SEP]")]]
    return ids, np.array([len(body) + 2 for body in bodies])


LONG_SEQUENCE = LongSequenceCheck()
TYPE_GUIDED = TypeGuidedCheck()
