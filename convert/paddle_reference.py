"""The original RNAErnie network rebuilt from `paddle.nn`, with PaddleNLP's exact numerics.

PaddleNLP is not a dependency (it does not import with current huggingface_hub), so this module
rebuilds `ErnieModel` + its heads from Paddle's own layers, reproducing what PaddleNLP does:
- every LayerNorm runs with epsilon 1e-12 (PaddleNLP's init_weights; Paddle's default is 1e-5);
- post-LN `paddle.nn.TransformerEncoderLayer` blocks, attention scale head_dim ** -0.5;
- `nn.Embedding(padding_idx=pad)`: id `pad` embeds to zeros whatever row the file stores;
- no attention mask given: additive -1e4 on keys whose input id is `pad`;
- position ids 0..L-1 on every row, token type ids 0;
- MLM head: transform -> activation -> LayerNorm -> h @ decoder_weight.T + decoder_bias;
- pooler: dense -> tanh on the first token; a sequence classifier on the pooled output, a token
  classifier on every position's output.
Weights come from the project's safe loader, never from `paddle.load`.
The fidelity of this module is tested against golden outputs made by real PaddleNLP (fixtures/golden).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import contextlib
import io
import warnings

import numpy as np

# On import Paddle warns about ccache and prints a notice when OMP_NUM_THREADS > 1 (which the
# verifier sets on purpose to use every core); neither concerns the user.
with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
    warnings.simplefilter("ignore")
    import paddle
import paddle.nn.functional as F
from paddle import nn

from convert.mapping import ENCODER_ROWS, expand_rows
from convert.paddle_config import PADDLENLP_LAYER_NORM_EPS, ErnieConfig
from rnaernie.mixedfold_format import LENGTH_TABLES

ATTENTION_MASK_VALUE = -1e4


@dataclass
class ReferenceOutputs:
    hidden_states: list[np.ndarray]  # embedding output, then each layer's output: [B, L, H]
    pooled: np.ndarray  # [B, H]
    logits: np.ndarray | None  # MLM: [B, L, V_source]; classifiers: [B, C] or [B, L, C]; encoder: None


class _Embeddings(nn.Layer):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, epsilon=PADDLENLP_LAYER_NORM_EPS)

    def forward(self, input_ids):
        positions = paddle.arange(input_ids.shape[1], dtype="int64").unsqueeze(0).expand_as(input_ids)
        token_types = paddle.zeros_like(input_ids)
        summed = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
                  + self.token_type_embeddings(token_types))
        return self.layer_norm(summed)


class _Pooler(nn.Layer):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, hidden_states):
        return paddle.tanh(self.dense(hidden_states[:, 0]))


class ErnieReference(nn.Layer):
    """ErnieModel (`embeddings`, `encoder`, `pooler`), parameter names as in the .pdparams file."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        block = nn.TransformerEncoderLayer(
            config.hidden_size, config.num_attention_heads, config.intermediate_size, dropout=0.0,
            activation=config.hidden_act if config.hidden_act != "swish" else "silu", attn_dropout=0.0,
            act_dropout=0.0, normalize_before=False)
        self.encoder = nn.TransformerEncoder(block, config.num_hidden_layers)
        self.pooler = _Pooler(config.hidden_size)
        for layer in self.sublayers():
            if isinstance(layer, nn.LayerNorm):
                layer._epsilon = PADDLENLP_LAYER_NORM_EPS

    def forward(self, input_ids):
        pad = (input_ids == self.config.pad_token_id).astype("float32")
        mask = (pad * ATTENTION_MASK_VALUE).unsqueeze([1, 2])  # [B, 1, 1, L]: hide pad keys
        states = [self.embeddings(input_ids)]
        for layer in self.encoder.layers:
            states.append(layer(states[-1], src_mask=mask))
        return states, self.pooler(states[-1])


class _MaskedLMHead(nn.Layer):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, epsilon=PADDLENLP_LAYER_NORM_EPS)
        self.decoder_weight = self.create_parameter([config.vocab_size, config.hidden_size])
        self.decoder_bias = self.create_parameter([config.vocab_size], is_bias=True)
        self.activation = getattr(F, config.hidden_act)

    def forward(self, sequence_output):
        h = self.layer_norm(self.activation(self.transform(sequence_output)))
        return paddle.matmul(h, self.decoder_weight, transpose_y=True) + self.decoder_bias


def _load(layer: nn.Layer, arrays: dict[str, np.ndarray], what: str,
          release: Callable[[np.ndarray], None] = lambda array: None) -> None:
    """Load every parameter, refusing any missing or unused key (Paddle's set_state_dict only warns).

    One parameter at a time, calling `release(array)` once it is copied, so the source's pages
    can leave memory while the model fills up.
    """
    own = layer.state_dict()
    missing = sorted(set(own) - set(arrays))
    unused = sorted(set(arrays) - set(own))
    if missing or unused:
        raise ValueError(f"{what}: missing {missing[:5]}, unused {unused[:5]}")
    for key, parameter in own.items():
        parameter.set_value(np.ascontiguousarray(arrays[key], dtype=np.float32))
        release(arrays[key])


def build_encoder(tensors: dict[str, np.ndarray], config: ErnieConfig, prefix: str,
                  release: Callable[[np.ndarray], None] = lambda array: None) -> ErnieReference:
    """The encoder (ErnieModel) loaded from its tensors, named `prefix` + the encoder rows' names, in eval mode."""
    with paddle.LazyGuard():  # skip the random initialisation of weights we overwrite at once
        ernie = ErnieReference(config)
    names = [row.source for row in expand_rows(ENCODER_ROWS, config.num_hidden_layers)]
    _load(ernie, {name: tensors[prefix + name] for name in names if prefix + name in tensors}, "encoder", release)
    return ernie.eval()


# Head builders, named by the entries of `convert.heads`. Each returns `top(sequence_output, pooled)`.

def masked_lm_head(tensors: dict[str, np.ndarray], config: ErnieConfig, decoder_weight: str, decoder_bias: str):
    """transform -> activation -> LayerNorm -> decoder: logits [B, L, V_source]."""
    with paddle.LazyGuard():
        head = _MaskedLMHead(config)
    _load(head, {
        "transform.weight": tensors["cls.predictions.transform.weight"],
        "transform.bias": tensors["cls.predictions.transform.bias"],
        "layer_norm.weight": tensors["cls.predictions.layer_norm.weight"],
        "layer_norm.bias": tensors["cls.predictions.layer_norm.bias"],
        "decoder_weight": tensors[decoder_weight], "decoder_bias": tensors[decoder_bias]}, "MLM head")
    head.eval()
    return lambda sequence_output, pooled: head(sequence_output)


def classifier_head(weight: np.ndarray, bias: np.ndarray, on_pooled: bool):
    """A linear classifier on the pooled output ([B, C], sequence classifier) or on every token ([B, L, C])."""
    linear = nn.Linear(weight.shape[0], weight.shape[1])
    _load(linear, {"weight": weight, "bias": bias}, "classifier")
    linear.eval()
    if on_pooled:
        return lambda sequence_output, pooled: linear(pooled)
    return lambda sequence_output, pooled: linear(sequence_output)


@paddle.no_grad()
def run_reference(ernie: ErnieReference, top, input_ids: np.ndarray) -> ReferenceOutputs:
    """Run the encoder and, when given, the head `top` on source-vocabulary ids."""
    ids = paddle.to_tensor(input_ids.astype(np.int64))
    states, pooled = ernie(ids)
    logits = None if top is None else top(states[-1], pooled).numpy()
    return ReferenceOutputs([s.numpy() for s in states], pooled.numpy(), logits)


def build_reference(tensors: dict[str, np.ndarray], config: ErnieConfig, detection,
                    release: Callable[[np.ndarray], None] = lambda array: None):
    """(encoder, head or None) for a `convert.heads.Detection`: the original network of that kind.
    `release(array)` runs after each encoder weight is copied into Paddle."""
    head, layout = detection.head, detection.layout
    ernie = build_encoder(tensors, config, layout.source_prefix, release)
    return ernie, (head.reference(tensors, config, layout) if head.reference else None)


# ------------------------------------------------------------------------------- the structure model

def _mixedfold_network(settings: dict):
    """The official scorer in paddle.nn, its parameters named as in the checkpoint (without `zuker.net.`)."""
    s = settings

    class Projector(nn.Layer):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(s["hidden_size"], s["projection"])
            self.projection = nn.Linear(s["projection"], s["projection"])

        def forward(self, x):
            return self.projection(F.relu(self.dense(x)))

    class Embedding(nn.Layer):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(6, s["embed_size"], padding_idx=0)

    class Encoder(nn.Layer):  # convs, BiLSTM, attention (the official CNNLSTMEncoder's names)
        def __init__(self):
            super().__init__()
            width, dilation = s["embed_size"] + s["projection"], 2 ** s["dilation"]
            self.conv = nn.Layer()
            self.conv.net = nn.LayerList()
            for filters, kernel in zip(s["num_filters"], s["filter_size"]):
                self.conv.net.append(nn.Sequential(
                    nn.Conv1D(width, filters, kernel, dilation=dilation, padding=dilation * (kernel // 2)),
                    nn.Identity(), nn.GroupNorm(1, filters), nn.CELU(), nn.Identity()))
                width = filters
            self.lstm = nn.LSTM(width, s["num_lstm_units"], num_layers=s["num_lstm_layers"],
                                direction="bidirectional")
            self.lstm_ln = nn.LayerNorm(2 * s["num_lstm_units"])
            self.att = nn.MultiHeadAttention(2 * s["num_lstm_units"], s["num_att"])

        def forward(self, x):  # [B, C, N]
            for layer in self.conv.net:
                x_a = layer(x)
                x = x + x_a if x.shape[1] == x_a.shape[1] else x_a
            x = paddle.transpose(x, [0, 2, 1])
            x_a = F.celu(self.lstm_ln(self.lstm(x)[0]))
            x = x + x_a if x.shape[2] == x_a.shape[2] else x_a
            x = paddle.transpose(x, [1, 0, 2])  # (N, B, C) into a batch-first layer, as the official code does
            x = x + self.att(x, x, x)
            return paddle.transpose(x, [1, 0, 2])

    class Paired(nn.Layer):
        def __init__(self, width: int):
            super().__init__()
            self.conv = nn.LayerList()
            for filters, kernel in zip(s["num_paired_filters"], s["paired_filter_size"]):
                self.conv.append(nn.Sequential(nn.Conv2D(width, filters, kernel, padding=kernel // 2),
                                               nn.GroupNorm(1, filters), nn.CELU(), nn.Identity()))
                width = filters
            fc = []
            for units in s["num_hidden_units"]:
                fc += [nn.Linear(width, units), nn.LayerNorm(units), nn.CELU(), nn.Identity()]
                width = units
            self.fc = nn.Sequential(*fc, nn.Linear(width, 3))

        def forward(self, x):  # [B, N, N, C]
            diagonal = 1 if s["exclude_diag"] else 0
            x = paddle.transpose(x, [0, 3, 1, 2])
            x = paddle.concat([paddle.triu(x, diagonal), paddle.tril(x, -1)], axis=0)
            for layer in self.conv:
                x_a = layer(x)
                x = x + x_a if x.shape[1] == x_a.shape[1] else x_a
            upper, _ = paddle.split(x, 2, axis=0)
            upper = paddle.triu(upper, diagonal)
            x = upper + paddle.tril(upper, -1)  # the official line takes tril of the upper half: zeros
            return self.fc(paddle.transpose(x, [0, 2, 3, 1]))

    class Network(nn.Layer):
        def __init__(self):
            super().__init__()
            self.embedding = Embedding()
            self.proj_head = Projector()
            self.encoder = Encoder()
            self.fc_paired = Paired(2 * s["num_lstm_units"])

        def forward(self, rows, states):
            x = paddle.transpose(self.embedding.embedding(rows), [0, 2, 1])
            x = paddle.concat([x, paddle.transpose(self.proj_head(states), [0, 2, 1])], axis=1)
            x = self.encoder(x)
            left, right = x[:, :, 0::2], paddle.flip(x[:, :, 1::2], axis=[-1])
            n = x.shape[1]
            pairs = paddle.concat([left.unsqueeze(2).expand([-1, n, n, left.shape[2]]),
                                   right.unsqueeze(1).expand([-1, n, n, right.shape[2]])], axis=3)
            return self.fc_paired(pairs)

    class Length(nn.Layer):
        def __init__(self, size: int):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(size, 1))

    return Network(), {table: Length(size) for table, size, _ in LENGTH_TABLES}


def _length_indicator(size: int, shape: tuple[int, ...]) -> np.ndarray:
    if shape == (size,):
        return np.tril(np.ones((size, size), dtype=np.float32))
    i, j, k, m = np.indices((*shape, *shape))
    return ((k <= i) & (m <= j)).reshape(size, size).astype(np.float32)


def mixedfold_scores(tensors: dict[str, np.ndarray], settings: dict, encoder: ErnieReference,
                     source_ids: dict[str, int], cls_id: int, unk_id: int, probes) -> list[dict[str, np.ndarray]]:
    """The official MixedFold scorer (RNAErnie `secondary_structure.py`'s facts: layer order, the attention run
    over a length-1 axis, the channel split with the odd channels reversed, `PairedLayer`'s lower triangle
    rebuilt from `tril` of the upper one, the length tables as `Linear`s on indicator matrices), loaded from
    the checkpoint's tensors under their official names, behind `encoder` fed `[CLS]` + one source-vocabulary
    token per base, no `[SEP]`. For each probe: the positional tensors and length tables, as make_param
    names them."""
    from rnaernie.mixedfold import base_rows, normalise, positional_dict

    network, lengths = _mixedfold_network(settings)
    _load(network, {key: tensors["zuker.net." + key] for key in network.state_dict()}, "structure network")
    network.eval()
    tables = {}
    for table, size, shape in LENGTH_TABLES:
        _load(lengths[table], {key: tensors[f"zuker.fc_length.{table}.{key}"]
                               for key in lengths[table].state_dict()}, table)
        tables[table] = lengths[table].net(paddle.to_tensor(_length_indicator(size, shape))).numpy().reshape(shape)
    out = []
    with paddle.no_grad():
        for probe in probes:
            sequence = normalise(probe)
            # the official tokenizer's ids: U read as T, unknown letters [UNK]; [CLS] first, no [SEP]
            ids = [cls_id] + [source_ids.get(letter, unk_id) for letter in sequence.replace("U", "T")]
            states, _ = encoder(paddle.to_tensor([ids]))
            paired = network(paddle.to_tensor([base_rows(sequence)]), states[-1])
            out.append(positional_dict(paired.numpy()[0], tables))
    return out
