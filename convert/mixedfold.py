"""The official secondary-structure model (`MixedFold`): its registry entry, mapping and verifier check.

The released checkpoint (`output_ft/ssp/RNAStrAlign/<variant>/model_state.pdparams`) holds the
Turner-2004 tables (`turner.*`) and the network (`zuker.*`), no encoder and no config: the official
script runs the pre-trained model of the same variant in front of it. So the kind is converted with
that checkpoint (`--backbone`, a `convert.kinds.Backbone`): `combine` makes the two files one table,
the backbone's encoder under `backbone.` (its masked-LM head is not part of this model). The folder:
the encoder as a stock `BertModel` (model.safetensors, from `backbone.`) and the network with the
Turner tables in `mixedfold.safetensors` (`rnaernie.mixedfold_format`), float32, torch layout:
* the network's sizes are read from the tensors' shapes (`settings_from`; what shapes cannot tell is
  what `run_ssp.py` fixes, `rnaernie.mixedfold_format.FIXED`), so its rows are too (`SideFile.rows_of`);
* Paddle `Linear` weights are `[in, out]`: transposed; convolutions, norms, embeddings, the LSTM copied;
* each LSTM tensor is saved twice (`lstm.weight_ih_l0` and `lstm.0.cell_fw.weight_ih`, ...): tied copies,
  both must hold the same values, else the conversion stops naming both; one copy is written;
* `turner.score_terminalAU` (-0.5), which the official class builds and the file lacks, is added.

The verifier's `StructureCheck` runs the official network rebuilt in Paddle
(`convert.paddle_reference.mixedfold_scores`) on the backbone's reference encoder, and
`rnaernie.mixedfold` on the folder, on probes; the Turner tables are compared bit for bit by the
structure check of every side file, and as the folder's loader reads them here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from convert.errors import ConversionError, MappingError
from convert.kinds import Backbone, Head, Kind
from convert.mapping import ENCODER_ROWS, KeyLayout, Row, SideFile, Transform, prefixed
from rnaernie.mixedfold_format import (FIXED, LENGTH_TABLES, SIDE_FILE, TERMINAL_AU, TURNER_SHAPES, metadata,
                                       tensor_shapes)

if TYPE_CHECKING:
    import numpy as np

_T, _C = Transform.TRANSPOSE, Transform.COPY
NET, LENGTH = "zuker.net.", "zuker.fc_length."
MARKERS = ("turner.score_stack", NET + "proj_head.dense.weight")
BACKBONE = "backbone."  # where `combine` puts the pre-trained encoder's tensors
BACKBONE_HINT = ("pass the pre-trained checkpoint of the same variant with --backbone "
                 "(output/<variant>/checkpoint_final/model_state.pdparams of the official release)")


def _indices(keys, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in keys if (m := re.fullmatch(re.escape(NET) + pattern, key))})


def _count(keys, pattern: str, source: str) -> int:
    found = _indices(keys, pattern)
    if found != list(range(len(found))):
        raise MappingError([f"the layers {pattern} are numbered {found}, not 0..n-1"], source)
    return len(found)


def settings_from(tensors: dict[str, np.ndarray], source: str) -> dict:
    """The network's sizes, read from the checkpoint's shapes, with what run_ssp.py fixes."""
    keys = set(tensors)
    missing = [key for key in MARKERS if key not in keys]
    if missing:
        raise MappingError([f"it is not a MixedFold checkpoint: it has no {missing[0]}"], source)
    conv = f"{NET}encoder.conv.net.{{}}.0.weight"
    paired = f"{NET}fc_paired.conv.{{}}.0.weight"
    n_conv = _count(keys, r"encoder\.conv\.net\.(\d+)\.0\.weight", source)
    n_paired = _count(keys, r"fc_paired\.conv\.(\d+)\.0\.weight", source)
    n_lstm = _count(keys, r"encoder\.lstm\.weight_ih_l(\d+)", source)
    # fc_paired.fc: (Linear, LayerNorm, CELU, Dropout) per hidden layer, then the last Linear
    fc = [tensors[f"{NET}fc_paired.fc.{i}.weight"] for i in _indices(keys, r"fc_paired\.fc\.(\d+)\.weight")]
    linears = [weight for weight in fc if weight.ndim == 2]
    if not linears or linears[-1].shape[1] != 3:
        raise MappingError(["the paired layer does not end in a Linear giving the 3 scores MixedFold reads"], source)
    return {
        **FIXED,
        "hidden_size": int(tensors[NET + "proj_head.dense.weight"].shape[0]),
        "embed_size": int(tensors[NET + "embedding.embedding.weight"].shape[1]),
        "num_filters": [int(tensors[conv.format(i)].shape[0]) for i in range(n_conv)],
        "filter_size": [int(tensors[conv.format(i)].shape[2]) for i in range(n_conv)],
        "num_lstm_layers": n_lstm,
        "num_lstm_units": int(tensors[NET + "encoder.lstm.weight_hh_l0"].shape[1]),
        "num_paired_filters": [int(tensors[paired.format(i)].shape[0]) for i in range(n_paired)],
        "paired_filter_size": [int(tensors[paired.format(i)].shape[2]) for i in range(n_paired)],
        "num_hidden_units": [int(weight.shape[1]) for weight in linears[:-1]],
    }


def rows(settings: dict) -> tuple[Row, ...]:
    """Paddle name -> torch name in mixedfold.safetensors, with the Paddle-side shape and the transform."""
    out = []
    for target, shape in tensor_shapes(settings).items():
        source, transform = _source(target)
        paddle_shape = tuple(reversed(shape)) if transform is _T else shape
        out.append(Row(source, target, paddle_shape, transform))
    return tuple(out)


def _source(target: str) -> tuple[str, Transform]:
    """The Paddle name of a torch tensor of the side file, and how it is carried over."""
    if target.startswith("turner."):
        return target, _C
    layer, rest = target.split(".", 1)
    if layer == "length":
        table, what = rest.rsplit(".", 1)
        return f"{LENGTH}{table}.net.0.{what}", _T if what == "weight" else _C
    index, part = (rest.split(".", 1) + [""])[:2] if layer in ("conv", "paired_conv", "paired_fc") else ("", rest)
    linear = part.endswith("weight") and layer in ("proj_head", "attention")
    if layer == "embedding":
        return NET + "embedding.embedding.weight", _C
    if layer == "proj_head":
        return f"{NET}proj_head.{rest}", _T if linear else _C
    if layer == "conv":
        return f"{NET}encoder.conv.net.{index}.{part.replace('conv.', '0.').replace('norm.', '2.')}", _C
    if layer == "lstm":
        return f"{NET}encoder.lstm.{rest}", _C
    if layer == "lstm_norm":
        return f"{NET}encoder.lstm_ln.{rest}", _C
    if layer == "attention":
        return f"{NET}encoder.att.{rest}", _T if linear else _C
    if layer == "paired_conv":
        return f"{NET}fc_paired.conv.{index}.{part.replace('conv.', '0.').replace('norm.', '1.')}", _C
    if layer == "paired_fc":  # Linear weights at 0, 4, ...; LayerNorms at 1, 5, ...
        return f"{NET}fc_paired.fc.{index}.{part}", _T if part == "weight" and int(index) % 4 == 0 else _C
    raise AssertionError(target)


def lstm_copies(settings: dict) -> tuple[tuple[str, str], ...]:
    """(the cell's own name, the flat name it must equal) for every LSTM tensor."""
    return tuple((f"{NET}encoder.lstm.{layer}.{cell}.{name}", f"{NET}encoder.lstm.{name}_l{layer}{suffix}")
                 for layer in range(settings["num_lstm_layers"]) for suffix, cell in (("", "cell_fw"),
                                                                                        ("_reverse", "cell_bw"))
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def rows_of(tensors: dict[str, np.ndarray], source: str) -> tuple[tuple[Row, ...], tuple[tuple[str, str], ...]]:
    """The side file's rows and the LSTM's tied copies, for the sizes `tensors` have (`SideFile.rows_of`)."""
    settings = settings_from(tensors, source)
    return rows(settings), lstm_copies(settings)


def combine(own: dict[str, np.ndarray], backbone: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The conversion's table (`Backbone.combine`): the backbone's encoder under `backbone.`, the structure
    model's own tensors, and `score_terminalAU` as the official class builds it (the file lacks it)."""
    import numpy as np

    if all(marker in backbone for marker in MARKERS):
        raise ConversionError(f"--backbone {name} is a structure model itself; {BACKBONE_HINT}.")
    word = "embeddings.word_embeddings.weight"
    prefix = next((p for p in ("ernie.", "", "extractor.") if getattr(backbone.get(p + word), "ndim", 0) == 2), None)
    if prefix is None:
        raise ConversionError(f"--backbone {name} holds no RNAErnie encoder (no {word}); {BACKBONE_HINT}.")
    hidden, reads = backbone[prefix + word].shape[1], own[NET + "proj_head.dense.weight"].shape[0]
    if hidden != reads:
        raise ConversionError(f"--backbone {name} has hidden size {hidden}, but the structure model's proj_head "
                              f"reads {reads}; pass the pre-trained checkpoint of the same variant.")
    encoder = {BACKBONE + key[len(prefix):]: array for key, array in backbone.items()
               if key.startswith(prefix) and key[len(prefix):].startswith(("embeddings.", "encoder.", "pooler."))}
    return {TERMINAL_AU[0]: np.array([TERMINAL_AU[1]], dtype=np.float32), **encoder, **own}


# ------------------------------------------------------------------------------- verifier

PROBES = (
    "GGGAAACCC",
    "gcauCCGGAAACUUCGGUGCau",  # lower case
    "AGCTACGGCCATATCACCCTGAACATGCCTGATCTCGTCTGATCTCAGAAGCTAAGCACGGTAGGGCCTGGTTAGTACTTGGATGGAAGACC",  # DNA letters
    "GGUANCAUGCCUAAGGNUACGUUAGCC",  # N
    "UUAGCGGCCAACGUUAGCGAUCGAUCGGCAUAGCAUCGAUCGAUGCGCGAUAUAGCGCUAGCUAGCGCGGCCCGAUAAAGCGCGCUUUCGAGAGCCUCUCUA"
    "GCGAUAGCGGCGC",
)
# One name per distinct score the network gives (make_param repeats the mismatch and unpaired channels under
# four names each), then the loop-length tables, then the Turner tables as the folder's loader reads them.
COMPARED = ("score_helix_stacking", "score_mismatch_external", "score_base_hairpin",
            *(table for table, _, _ in LENGTH_TABLES))
TURNER = "structure: Turner tables (bits)"  # as int32 bit patterns: 0 only when every value is the same float


class StructureCheck:
    """The verifier's comparison for this kind (a `convert.kinds.KindCheck`): on the probes, the official network
    rebuilt in Paddle behind the backbone's reference encoder (source vocabulary, `[CLS]` and no `[SEP]`), and
    the folder as users run it (`rnaernie.mixedfold` on its encoder and side file): every positional score,
    every loop-length table and the Turner tables (their bit patterns), scored like every layer and named."""

    name = "structure"
    outputs = (*(f"structure: {name}" for name in COMPARED), TURNER)
    stored_too = False  # the side file is float32: run with the float32 mapping

    def inputs(self, setup) -> dict:
        tokens = setup.conversion.vocabulary.source_tokens
        return {"probes": PROBES, "settings": settings_from(setup.conversion.source.tensors, "the checkpoint"),
                "source_ids": {letter: tokens.index(letter) for letter in "ACGT"}, "cls_id": tokens.index("[CLS]"),
                "unk_id": tokens.index("[UNK]")}

    def run_paddle(self, inputs: dict, paddle) -> dict[str, list[np.ndarray]]:
        from convert.paddle_reference import mixedfold_scores

        scores = mixedfold_scores(paddle.tensors, inputs["settings"], paddle.encoder, inputs["source_ids"],
                                  inputs["cls_id"], inputs["unk_id"], inputs["probes"])
        turner = {key.split(".", 1)[1]: value for key, value in paddle.tensors.items() if key.startswith("turner.")}
        return self._named(scores, turner)

    def run_torch(self, inputs: dict, folder) -> dict[str, list[np.ndarray]]:
        from rnaernie.mixedfold import StructureScorer, load_network
        from rnaernie.mixedfold_format import read_settings

        settings = read_settings(folder.out_dir)  # the folder's encoder as loaded (float32 mapping), its network
        network, turner = load_network(folder.out_dir, settings, folder.model.device)
        scorer = StructureScorer(folder.tokenizer, folder.model, network, turner, settings, str(folder.model.device))
        return self._named([scorer.positional(probe) for probe in inputs["probes"]], scorer.turner)

    @staticmethod
    def _named(scores: list[dict], turner: dict) -> dict[str, list[np.ndarray]]:
        import numpy as np

        out = {f"structure: {name}": [probe[name] for probe in scores] for name in COMPARED}
        values = np.concatenate([np.asarray(turner[name], np.float32).reshape(-1) for name in sorted(TURNER_SHAPES)])
        out[TURNER] = [values.view(np.int32).astype(np.float64)]  # the tables hold inf: compare the bits
        return out


STRUCTURE_MODEL = Head(
    kind=Kind.STRUCTURE_MODEL,
    description="secondary-structure model (MixedFold)",
    paddle_classes=("MixedFold",),
    architecture="BertModel",
    auto_class="AutoModel",
    layouts=(KeyLayout("mixedfold", "turner. and zuker. tensors, with the --backbone's encoder", MARKERS[1],
                       prefixed(ENCODER_ROWS, BACKBONE), BACKBONE,
                       side_files=(SideFile(SIDE_FILE, (), rows_of=rows_of, metadata=lambda vocabulary, tensors:
                                            metadata(settings_from(tensors, "the checkpoint"))),)),),
    logits=None,  # the network's scores are compared by its own check
    pipeline_tag="feature-extraction",  # what stock transformers runs of it: the encoder
    checks=(StructureCheck(),),
    backbone=Backbone(f"it holds no encoder: {BACKBONE_HINT} (a release folder pairs them itself)", combine),
    usage="""```python
from rnaernie.structure_model import MixedFoldPredictor  # pip install 'rnaernie-convert[structure]'

predictor = MixedFoldPredictor(MODEL)
[prediction] = predictor.predict(["GGGGCCAAAAGGCCCC"])
print(prediction.structure.dot_bracket(), prediction.structure.score)

# the encoder alone, with stock transformers
from transformers import AutoModel
encoder = AutoModel.from_pretrained(MODEL)
```

Or from the command line: `rnaernie fold MODEL input.fa -o structures.dbn`.""",
)
