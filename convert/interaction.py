"""The miRNA-target interaction model (official `ErnieRRInter`): its mapping rows, config and verifier check.

The checkpoint holds an `ErnieModel` under `extractor.` and a head that is no transformers class.
The encoder becomes the folder's stock `BertModel`; the head goes to `interaction_head.safetensors`
under torch's module names (`rnaernie.interaction_head` describes that file).

* Paddle saves each LSTM tensor twice (`cnn_lstm.5.weight_ih_l0` and `cnn_lstm.5.0.cell_fw.weight_ih`,
  ...): both must hold the same values, else the conversion stops naming both.
* The official folder has no config (the official script reads the pre-trained model's). Without
  `--config`, a checkpoint of the official full size gets the official `model_config.json`, bundled
  in `convert/data/`; the number of attention heads cannot be read from shapes, so any other size
  asks for `--config`.
* The verifier's check runs built-in probe pairs (short, long, over-length `a` and `b`, `N`, `U`)
  through the head rebuilt here in `paddle.nn` on the reference encoder, and through
  `rnaernie.interaction` on the folder, and compares the logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from convert.errors import ConfigError
from convert.kinds import Head, Kind
from convert.mapping import ENCODER_ROWS, KeyLayout, Row, SideFile, Transform, prefixed
from rnaernie.interaction_head import SETTINGS, SIDE_FILE, metadata

if TYPE_CHECKING:
    import numpy as np

_T, _C = Transform.TRANSPOSE, Transform.COPY
PREFIX = "extractor."
OFFICIAL_CONFIG = Path(__file__).resolve().parent / "data" / "official_model_config.json"
# the full size's shapes, read from the weights (the official model_config.json gives these)
OFFICIAL_SHAPES = {"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072, "vocab_size": 39,
                   "max_position_embeddings": 513}

_S = SETTINGS
_GATES = 4 * _S["lstm_hidden"]
_LSTM_SHAPES = {"weight_ih": (_GATES, _S["lstm_input"]), "weight_hh": (_GATES, _S["lstm_hidden"]),
                "bias_ih": (_GATES,), "bias_hh": (_GATES,)}
_DIRECTIONS = (("", "cell_fw"), ("_reverse", "cell_bw"))

# Paddle name -> torch name in interaction_head.safetensors. Shapes are Paddle's; H is the hidden size.
HEAD_ROWS = (
    Row("proj_head.dense.weight", "proj_head.dense.weight", ("H", _S["proj_size"]), _T),
    Row("proj_head.dense.bias", "proj_head.dense.bias", (_S["proj_size"],), _C),
    Row("proj_head.projection.weight", "proj_head.projection.weight", (_S["proj_size"], _S["proj_size"]), _T),
    Row("proj_head.projection.bias", "proj_head.projection.bias", (_S["proj_size"],), _C),
    Row("embedder.weight", "embedder.weight", (len(_S["letters"]), _S["embedding_dim"]), _C),
    Row("cnn_lstm.0.weight", "conv.weight",
        (_S["num_filters"], _S["embedding_dim"] + _S["proj_size"], _S["kernel_size"]), _C),  # [out, in, k] in both
    Row("cnn_lstm.0.bias", "conv.bias", (_S["num_filters"],), _C),
    # Paddle's gate order (input, forget, cell, output) and layout are torch's
    *(Row(f"cnn_lstm.5.{name}_l0{suffix}", f"lstm.{name}_l0{suffix}", shape, _C)
      for suffix, _ in _DIRECTIONS for name, shape in _LSTM_SHAPES.items()),
    Row("classifier.2.weight", "classifier.2.weight", (2 * _S["lstm_hidden"], _S["classifier_hidden"]), _T),
    Row("classifier.2.bias", "classifier.2.bias", (_S["classifier_hidden"],), _C),
    Row("classifier.4.weight", "classifier.4.weight", (_S["classifier_hidden"], _S["num_labels"]), _T),
    Row("classifier.4.bias", "classifier.4.bias", (_S["num_labels"],), _C),
)
# (the cell's own name, the flat name it must equal)
LSTM_COPIES = tuple((f"cnn_lstm.5.0.{cell}.{name}", f"cnn_lstm.5.{name}_l0{suffix}")
                    for suffix, cell in _DIRECTIONS for name in _LSTM_SHAPES)
MARKER = "cnn_lstm.0.weight"

# Built-in probe pairs for the verifier (DNA or RNA letters, as users give them).
PROBE_PAIRS = (
    ("TGAGGTAGTAGGTTGTATAGTT", "AACTATACAACCTACTACCTCA"),  # let-7a and a perfect site
    ("UAGCUUAUCAGACUGAUGUUGA", "UCAACAUCAGUCUGAUAAGCUA"),  # RNA letters: U read as T
    ("CCATTAGGGACCGTTACACTA", "GCGACAGTACAACATCCAGAAGAAGGAGATTGTGGTGAAGCTTAGCCATGCA"),  # b over 40
    ("ACGTACGTTGCATGCAAGGCTTAACGTAGCAT", "GGCATTACGATCGATTGCAAGCTTAGCCATGCATGACGTT"),  # a over 26
    ("TNAGCTTATCAGACTGATGNTGA", "NNCAACATCAGTCTGATAAGCTANNG"),  # N in both
    ("TGAGGTAGTAGGTTGTA", "CATAAGC"),  # short b
)


def official_shapes(tensors: dict[str, np.ndarray]) -> dict[str, int]:
    """The encoder's sizes as the weights give them (for deciding whether the official config fits)."""
    word = tensors[PREFIX + "embeddings.word_embeddings.weight"]
    layers = {key.split(".")[3] for key in tensors if key.startswith(PREFIX + "encoder.layers.")}
    inter = tensors.get(PREFIX + "encoder.layers.0.linear1.weight")
    position = tensors[PREFIX + "embeddings.position_embeddings.weight"]
    return {"hidden_size": int(word.shape[1]), "num_hidden_layers": len(layers),
            "intermediate_size": int(inter.shape[1]) if inter is not None else 0, "vocab_size": int(word.shape[0]),
            "max_position_embeddings": int(position.shape[0])}


def default_config(tensors: dict[str, np.ndarray], checkpoint: Path) -> tuple[Path, str]:
    """The bundled official config when the encoder has the official full size; otherwise ask for --config."""
    found = official_shapes(tensors)
    if found == OFFICIAL_SHAPES:
        return OFFICIAL_CONFIG, ("no config beside it (the official interaction folder has none), so the official "
                                 "pre-trained model_config.json (bundled) was used: the weights have its sizes, and "
                                 "its 12 attention heads cannot be read from them")
    sizes = ", ".join(f"{key} {value}" for key, value in found.items() if OFFICIAL_SHAPES[key] != value)
    raise ConfigError(f"no model_config.json next to {checkpoint}, and the interaction model's encoder is not the "
                      f"official size ({sizes}); pass the pre-trained model's model_config.json with --config.")


# ------------------------------------------------------------------------------- verifier

def source_inputs(pairs, source_ids: dict[str, int], unk_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The two input tracks as the official code builds them from the SOURCE vocabulary (the Paddle side's
    inputs): letters `NATCG` -> 0..4, and the official tokenizer's ids; `b` cut or padded to 40, both
    tracks to 66. Written independently of `rnaernie.interaction` so that the verifier checks it."""
    import numpy as np

    tokens, ids = [], []
    for a, b in pairs:
        a, b = a.upper().replace("U", "T"), b.upper().replace("U", "T")
        b_tokens = [_S["letters"].index(x) for x in b][:_S["max_b"]]
        b_ids = [source_ids.get(x, unk_id) for x in b][:_S["max_b"]]
        b_padding = [0] * (_S["max_b"] - len(b_tokens))
        row_tokens = [_S["letters"].index(x) for x in a] + b_tokens + b_padding
        row_ids = [source_ids.get(x, unk_id) for x in a] + b_ids + b_padding
        tokens.append((row_tokens + [0] * _S["length"])[:_S["length"]])
        ids.append((row_ids + [0] * _S["length"])[:_S["length"]])
    return np.array(tokens, dtype=np.int64), np.array(ids, dtype=np.int64)


def paddle_head(tensors: dict[str, np.ndarray], hidden: int):
    """ErnieRRInter's head rebuilt in paddle.nn from the checkpoint's own (float32) tensors:
    (tokens [B, 66], encoder output [B, 66, H]) -> logits [B, 2], eval mode."""
    import paddle
    from paddle import nn

    class Head(nn.Layer):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(hidden, _S["proj_size"])
            self.projection = nn.Linear(_S["proj_size"], _S["proj_size"])
            self.embedder = nn.Embedding(len(_S["letters"]), _S["embedding_dim"])
            self.conv = nn.Conv1D(_S["embedding_dim"] + _S["proj_size"], _S["num_filters"], _S["kernel_size"])
            self.pool = nn.MaxPool1D(_S["pool"])
            self.lstm = nn.LSTM(_S["lstm_input"], _S["lstm_hidden"], direction="bidirectional")
            self.hidden_layer = nn.Linear(2 * _S["lstm_hidden"], _S["classifier_hidden"])
            self.out = nn.Linear(_S["classifier_hidden"], _S["num_labels"])

        def forward(self, tokens, states):
            x = paddle.transpose(self.embedder(tokens), perm=[0, 2, 1])
            e = paddle.transpose(self.projection(nn.functional.relu(self.dense(states))), perm=[0, 2, 1])
            x = self.pool(nn.functional.relu(self.conv(paddle.concat([x, e], axis=1))))
            x, _ = self.lstm(x)
            return self.out(self.hidden_layer(nn.functional.relu(x[:, -1, :])))  # ReLU, Linear, Linear

    from convert.paddle_reference import _load

    head = Head()  # not under paddle.LazyGuard: its LSTM flattens its weights when built
    own = {"dense": "proj_head.dense", "projection": "proj_head.projection", "embedder": "embedder",
           "conv": "cnn_lstm.0", "lstm": "cnn_lstm.5", "hidden_layer": "classifier.2", "out": "classifier.4"}
    state = {}
    for key in head.state_dict():
        layer, rest = key.split(".", 1)
        if layer == "lstm" and rest.startswith("0."):
            source = f"cnn_lstm.5.{rest}"  # the cells' own names
        else:
            source = f"{own[layer]}.{rest}"
        state[key] = tensors[source]
    _load(head, state, "interaction head")  # refuses a missing or unused key
    return head.eval()


def paddle_logits(encoder, tensors: dict[str, np.ndarray], hidden: int, tokens: np.ndarray,
                  ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """(the encoder's hidden states, the head's logits) of the reference network on the pairs' tracks."""
    import paddle

    head = paddle_head(tensors, hidden)
    with paddle.no_grad():
        states, _ = encoder(paddle.to_tensor(ids))  # ErnieReference masks [PAD] keys itself
        logits = head(paddle.to_tensor(tokens), states[-1])
    return [state.numpy() for state in states], logits.numpy()


class InteractionCheck:
    """The verifier's comparison for this kind (a `convert.heads.KindCheck`): the built-in probe pairs through
    the reference (encoder + head rebuilt in paddle.nn, source vocabulary) and through the folder as users run it
    (`rnaernie.interaction` on the stock BertModel and the side file); the encoder's output on the 66-position
    inputs and the logits are scored like every layer."""

    name = "interaction"
    STATES, LOGITS = "interaction: encoder output on the pairs", "interaction: logits"
    outputs = (STATES, LOGITS)
    stored_too = False  # the head's side file is float32: run with the float32 mapping

    def inputs(self, setup) -> dict:
        tokens = setup.conversion.vocabulary.source_tokens
        return {"pairs": PROBE_PAIRS, "source_ids": {letter: tokens.index(letter) for letter in "ATCG"},
                "unk_id": tokens.index("[UNK]")}

    def run_paddle(self, inputs: dict, paddle_model) -> dict[str, list[np.ndarray]]:
        tokens, ids = source_inputs(inputs["pairs"], inputs["source_ids"], inputs["unk_id"])
        states, logits = paddle_logits(paddle_model.encoder, paddle_model.tensors, paddle_model.config.hidden_size,
                                       tokens, ids)
        return {self.STATES: [states[-1]], self.LOGITS: [logits]}

    def run_torch(self, inputs: dict, folder) -> dict[str, list[np.ndarray]]:
        from rnaernie.interaction import InteractionModel, Pair, load_head

        device = folder.model.device
        scorer = InteractionModel(folder.tokenizer, folder.model, load_head(folder.out_dir,
                                                                            folder.model.config.hidden_size, device),
                                  str(device))
        states, logits = scorer.outputs(*scorer.encode(Pair("a", a, "b", b, where=f"probe pair {n}")
                                                       for n, (a, b) in enumerate(inputs["pairs"], start=1)))
        return {self.STATES: [states], self.LOGITS: [logits]}


def card_section(record: dict, verification: dict | None) -> str:
    """The card's word on the head: stock transformers runs the encoder, rnaernie the whole model."""
    return f"""

## The interaction head
This is RNAErnie's miRNA-target interaction model (the official `ErnieRRInter`). Stock `transformers` loads
its encoder (`AutoModel`); the head that turns the encoder's states into the two logits (a projection, an
embedding of a second `N A T C G` track, a Conv1D, a bidirectional LSTM over the 320 filters, a small
classifier) is no transformers class: it is in `{SIDE_FILE}`, under torch's module names, with its
settings in the file's metadata, and `rnaernie.interaction` (`pip install rnaernie-convert`) runs the whole
model as the official code does: `rnaernie interact MODEL pairs.csv -o scores.csv`."""


RR_INTERACTION = Head(
    kind=Kind.RR_INTERACTION,
    description="miRNA-target interaction model (ErnieRRInter)",
    paddle_classes=("ErnieRRInter",),
    architecture="BertModel",
    auto_class="AutoModel",
    layouts=(KeyLayout("rr-inter", "extractor.-prefixed encoder, proj_head, embedder, cnn_lstm, classifier", MARKER,
                       prefixed(ENCODER_ROWS, PREFIX), PREFIX, tied_copies=LSTM_COPIES,
                       side_files=(SideFile(SIDE_FILE, HEAD_ROWS, metadata=lambda vocabulary, tensors: metadata()),)),),
    logits=None,  # the head's logits are compared by its own check
    pipeline_tag="feature-extraction",  # what stock transformers runs of it: the encoder
    checks=(InteractionCheck(),),
    default_config=default_config,
    card_section=card_section,
    usage="""```python
from rnaernie.interaction import InteractionModel  # pip install rnaernie-convert

model = InteractionModel.from_pretrained(MODEL)
logits = model([("UGAGGUAGUAGGUUGUAUAGUU", "AACUAUACAACCUACUACCUCA")])  # [pairs, 2]; class 1: interacts

# the encoder alone, with stock transformers
from transformers import AutoModel
encoder = AutoModel.from_pretrained(MODEL)
```

Or from the command line: `rnaernie interact MODEL pairs.csv -o scores.csv` (columns a_name,a_seq,b_name,b_seq).""",
)
