"""Translate a PaddleNLP ERNIE config into a stock `transformers` BERT config (plain JSON, no torch).

RNAErnie is ERNIE 1.0, which is BERT's architecture: post-LN encoder, learned absolute positions,
token types, tanh pooler, transform -> act -> LayerNorm -> decoder MLM head. So the converted
model is a stock `BertForMaskedLM`; every numeric setting is written out explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from convert.errors import ConfigError

# PaddleNLP's init_weights sets every LayerNorm's epsilon to 1e-12 when the model is built,
# whatever the config says (Paddle's own default would be 1e-5).
PADDLENLP_LAYER_NORM_EPS = 1e-12
PADDLENLP_DEFAULT_INTERMEDIATE = 3072  # not written in the official model_config.json
# Paddle activation name -> transformers ACT2FN name with the same numerics.
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "silu", "swish": "silu", "tanh": "tanh", "sigmoid": "sigmoid"}
CONFIG_FILE_NAMES = ("model_config.json", "config.json")


@dataclass(frozen=True)
class ErnieConfig:
    """The numbers that define the original network, as PaddleNLP builds it."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    max_position_embeddings: int
    type_vocab_size: int
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    architecture: str | None = None  # the PaddleNLP class the config names, if it names one


def find_config_file(checkpoint: Path) -> Path:
    """The config saved beside the weights: legacy `model_config.json` or flat `config.json`."""
    for name in CONFIG_FILE_NAMES:
        candidate = checkpoint.parent / name
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no model_config.json or config.json next to {checkpoint}; pass the model's config with --config FILE."
    )


def load_paddle_config(path: str | Path) -> ErnieConfig:
    """Read PaddleNLP's legacy nested form (`init_args`) or the flat form written by PaddleNLP >= 2.5."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the --config path.") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore the original model_config.json.") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object; restore the original model_config.json.")
    architecture = None
    if "init_args" in raw:  # {"init_args": [{... "init_class": "ErnieModel"}], "init_class": "ErnieForMaskedLM"}
        args = raw["init_args"][0] if isinstance(raw["init_args"], list) and raw["init_args"] else None
        if not isinstance(args, dict):
            raise ConfigError(f"{path}: init_args[0] must be an object of model settings.")
        architecture = raw.get("init_class")
        raw = args
    elif isinstance(raw.get("architectures"), list) and raw["architectures"]:
        architecture = str(raw["architectures"][0])
    return _parse_settings(raw, architecture, path)


def _parse_settings(raw: dict, architecture: object, path: Path) -> ErnieConfig:
    def integer(key: str, default: int | None = None) -> int:
        value = raw.get(key, default)
        minimum = 0 if key == "pad_token_id" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{path}: {key} must be an integer >= {minimum}, got {value!r}.")
        return value

    def number(key: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {key} must be a number, got {value!r}.")
        return float(value)

    act = raw.get("hidden_act", "gelu")  # PaddleNLP's ErnieConfig default
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ConfigError(
            f"{path}: hidden_act {act!r} is not supported; expected one of {', '.join(sorted(ACTIVATIONS))}."
        )
    config = ErnieConfig(
        vocab_size=integer("vocab_size"),
        hidden_size=integer("hidden_size", 768),
        num_hidden_layers=integer("num_hidden_layers", 12),
        num_attention_heads=integer("num_attention_heads", 12),
        intermediate_size=integer("intermediate_size", PADDLENLP_DEFAULT_INTERMEDIATE),
        hidden_act=act,
        max_position_embeddings=integer("max_position_embeddings", 512),
        type_vocab_size=integer("type_vocab_size", 2),
        pad_token_id=integer("pad_token_id", 0),
        hidden_dropout_prob=number("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=number("attention_probs_dropout_prob", 0.1),
        initializer_range=number("initializer_range", 0.02),
        architecture=architecture if isinstance(architecture, str) else None,
    )
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"{path}: hidden_size {config.hidden_size} is not divisible by num_attention_heads "
            f"{config.num_attention_heads}."
        )
    return config


def to_transformers_config(config: ErnieConfig, vocab_size: int, architecture: str, dtype: str,
                           extra: dict | None = None) -> dict:
    """A `config.json` for stock transformers `BertFor*`, every numeric setting explicit."""
    return {
        "architectures": [architecture],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": ACTIVATIONS[config.hidden_act],
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": PADDLENLP_LAYER_NORM_EPS,
        "pad_token_id": config.pad_token_id,
        "position_embedding_type": "absolute",
        # The [PAD] input row is zero while the decoder keeps the stored row: the two must differ.
        "tie_word_embeddings": False,
        "is_decoder": False,
        "add_cross_attention": False,
        "use_cache": False,
        "classifier_dropout": None,
        "dtype": dtype,
        "torch_dtype": dtype,
        **(extra or {}),
    }
