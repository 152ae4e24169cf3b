"""The verifier's check of a converted structure model: the official network rebuilt in Paddle vs the folder.

The Paddle side is this module's own `paddle.nn` rebuild of the official `MixedFold` scorer (RNAErnie
`secondary_structure.py`'s facts: layer order, the attention run over a length-1 axis, the channel
split with the odd channels reversed, `PairedLayer`'s lower triangle rebuilt from `tril` of the upper
one, the length tables as `Linear`s on indicator matrices), loaded from the checkpoint's own tensors
under their official names, behind the reference encoder of the pre-trained checkpoint
(`convert.paddle_reference`) fed `[CLS]` + one source-vocabulary token per base, no `[SEP]`.
The torch side is what users run: `rnaernie.mixedfold.StructureScorer` on the folder.

Compared on the probes, by name: every positional score tensor (within the parity tolerance), the seven
loop-length tables (same tolerance) and the 23 Turner tables (bit for bit; `score_terminalAU` against
the official -0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.mixedfold import NET, sha256
from rnaernie.mixedfold import normalise
from rnaernie.mixedfold_format import LENGTH_TABLES, TERMINAL_AU

PROBES = (
    "GGGAAACCC",
    "gcauCCGGAAACUUCGGUGCau",  # lower case
    "AGCTACGGCCATATCACCCTGAACATGCCTGATCTCGTCTGATCTCAGAAGCTAAGCACGGTAGGGCCTGGTTAGTACTTGGATGGAAGACC",  # DNA letters
    "GGUANCAUGCCUAAGGNUACGUUAGCC",  # N
    "UUAGCGGCCAACGUUAGCGAUCGAUCGGCAUAGCAUCGAUCGAUGCGCGAUAUAGCGCUAGCUAGCGCGGCCCGAUAAAGCGCGCUUUCGAGAGCCUCUCUA"
    "GCGAUAGCGGCGC",
)


def _paddle_network(settings: dict):
    """The official scorer in paddle.nn, its parameters named as in the checkpoint (without `zuker.net.`)."""
    import paddle
    from paddle import nn
    from paddle.nn import functional as F

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


def _indicator(size: int, shape: tuple[int, ...]) -> np.ndarray:
    if shape == (size,):
        return np.tril(np.ones((size, size), dtype=np.float32))
    i, j, k, m = np.indices((*shape, *shape))
    return ((k <= i) & (m <= j)).reshape(size, size).astype(np.float32)


def paddle_scores(tensors: dict[str, np.ndarray], settings: dict, encoder, source_ids: dict[str, int],
                  cls_id: int, unk_id: int, probes=PROBES) -> list[dict[str, np.ndarray]]:
    """For each probe: the reference's positional tensors and length tables, as make_param names them."""
    import paddle

    from convert.paddle_reference import _load
    from rnaernie.mixedfold import base_rows, positional_dict

    network, lengths = _paddle_network(settings)
    _load(network, {key: tensors[NET + key] for key in network.state_dict()}, "structure network")
    network.eval()
    tables = {}
    for table, size, shape in LENGTH_TABLES:
        _load(lengths[table], {key: tensors[f"zuker.fc_length.{table}.{key}"]
                               for key in lengths[table].state_dict()}, table)
        tables[table] = lengths[table].net(paddle.to_tensor(_indicator(size, shape))).numpy().reshape(shape)
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


def side_file_differs(folder: Path, expected: dict[str, np.ndarray]) -> list[str]:
    """The side file's tensors that are not, bit for bit, the converter's mapping of the checkpoint."""
    from safetensors.numpy import load_file

    from rnaernie.mixedfold_format import SIDE_FILE

    stored = load_file(str(folder / SIDE_FILE))
    return sorted(name for name in set(stored) | set(expected)
                  if name not in stored or name not in expected or stored[name].dtype != expected[name].dtype
                  or not np.array_equal(stored[name], expected[name]))


def compare(paddle_side: list[dict[str, np.ndarray]], torch_side: list[dict[str, np.ndarray]],
            turner_folder: dict[str, np.ndarray], turner_checkpoint: dict[str, np.ndarray], atol: float,
            stored_differs: list[str]) -> dict:
    """The check's record: the largest difference of each named tensor over the probes, and what differs."""
    worst: dict[str, float] = {}
    for reference, converted in zip(paddle_side, torch_side, strict=True):
        for name, value in reference.items():
            other = converted.get(name)
            diff = float("inf") if other is None or other.shape != value.shape else float(np.abs(other - value).max())
            worst[name] = max(worst.get(name, 0.0), diff)
    expected = {**turner_checkpoint, TERMINAL_AU[0].split(".", 1)[1]: np.array([TERMINAL_AU[1]], np.float32)}
    turner_differs = sorted(name for name in set(expected) | set(turner_folder)
                            if name not in turner_folder or name not in expected
                            or turner_folder[name].dtype != np.float32
                            or not np.array_equal(turner_folder[name], expected[name]))
    differs = sorted(name for name, diff in worst.items() if not diff <= atol)
    named = ([f"{name} (stored)" for name in stored_differs] + differs
             + [f"turner.{name}" for name in turner_differs if f"turner.{name}" not in stored_differs])
    return {"probes": len(paddle_side), "atol": atol, "max_abs_diff": worst, "stored_differs": stored_differs,
            "turner_tables": len(expected), "turner_differs": turner_differs, "differs": named,
            "verdict": "fail" if named else "pass"}


def run_check(ssp_tensors: dict[str, np.ndarray], settings: dict, backbone_tensors: dict[str, np.ndarray],
              backbone_config, backbone_prefix: str, source_tokens: tuple[str, ...], folder: Path,
              atol: float) -> dict:
    """The side file against the mapping, then both sides on the probes, compared (see `compare`)."""
    from convert.mixedfold import network_tensors
    from convert.paddle_reference import build_encoder
    from rnaernie.mixedfold import StructureScorer

    encoder = build_encoder(backbone_tensors, backbone_config, backbone_prefix)
    source_ids = {letter: source_tokens.index(letter) for letter in "ACGT"}
    reference = paddle_scores(ssp_tensors, settings, encoder, source_ids, source_tokens.index("[CLS]"),
                              source_tokens.index("[UNK]"))
    scorer = StructureScorer.from_pretrained(folder, device="cpu")
    converted = [scorer.positional(probe) for probe in PROBES]
    turner = {key[len("turner."):]: value for key, value in ssp_tensors.items() if key.startswith("turner.")}
    stored = side_file_differs(folder, network_tensors(ssp_tensors, "the checkpoint")[0])
    return compare(reference, converted, scorer.turner, turner, atol, stored)


def verify_structure_model(folder: Path, checkpoint: Path, tensors, settings, backbone: Path, backbone_tensors, prefix: str,
            config, source_tokens: tuple[str, ...], atol, say, staged_for: Path) -> None:
    """The encoder's verification (as any pre-trained model), then this check, merged into one verdict;
    `ParityError` when either fails."""
    from convert.errors import ParityError
    from convert.heads import resolve_config
    from convert.paddle_config import load_paddle_config
    from convert.verify import PARITY_ATOL, verify_conversion
    from convert.writer import write_json
    from rnaernie.mixedfold_format import SIDE_FILE

    verification = verify_conversion(backbone, folder, config=config, atol=atol, say=say, staged_for=staged_for)
    config_path, _ = resolve_config(backbone, Path(config) if config else None)
    check = run_check(tensors, settings, backbone_tensors, load_paddle_config(config_path), prefix,
                      source_tokens, folder, atol or PARITY_ATOL)
    check["checkpoint_sha256"] = sha256(checkpoint)
    verification["checks"]["structure-model"] = check
    verification["layers"] += [{"name": f"structure: {name}", "max_abs": diff}
                               for name, diff in check["max_abs_diff"].items()]
    verification["files"][SIDE_FILE] = sha256(folder / SIDE_FILE)
    if check["verdict"] != "pass":
        verification["verdict"] = "fail"
        verification["failed_checks"] = [*verification["failed_checks"], "structure-model"]
        verification["failure"] = f"the structure model's {', '.join(check['differs'])} differ from the official"
    write_json(folder / "verification.json", verification)
    with open(folder / "README.md", "a", encoding="utf-8") as card:
        card.write(card_section(check))
    if check["verdict"] != "pass":
        raise ParityError(f"verification failed: {verification['failure']}. The figures are in "
                          f"{staged_for / 'verification.json'}. Do not publish this folder.")
    worst = max(check["max_abs_diff"].values())
    say(f"structure model OK: {len(check['max_abs_diff'])} score tensors within atol {check['atol']:g} "
        f"(max {worst:.2g}) on {check['probes']} probes, {check['turner_tables']} Turner tables bit-exact")


def card_section(check: dict) -> str:
    worst = max(check["max_abs_diff"].values())
    return f"""

## The secondary-structure model
This folder also holds RNAErnie's secondary-structure model (the official `MixedFold`, mxfold2's design):
`mixedfold.safetensors` has its network (which turns this encoder's hidden states into positional folding
scores) and the Turner-2004 tables, under torch's module names, with its settings in the file's metadata.
Stock `transformers` loads the encoder (`AutoModel`); `rnaernie.mixedfold.StructureScorer`
(`pip install rnaernie-convert`) runs encoder and network as the official code does. Verified against the
official network rebuilt in Paddle on {check['probes']} probes: every positional score and loop-length table
within {check['atol']:g} (largest difference {worst:.2g}), the {check['turner_tables']} Turner tables bit for bit.
"""
