"""LXMERT tokenizers: BERT WordPiece on the bert-base-uncased vocabulary.

Two tokenizers with one output. `LxmertTokenizerFast` runs the `tokenizers` library (Rust);
`LxmertTokenizer` is pure Python and reproduces that library's pipeline step by step:

    raw text -> split out special tokens -> normalize (clean, CJK spacing, strip accents, lowercase)
             -> pre-tokenize (whitespace, punctuation) -> WordPiece (greedy longest match) -> ids

Everything after "ids" (special tokens, truncation, padding, tensors, decoding, saving) lives in
`LxmertTokenizerBase`, which both share, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import string
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lxmert.hub import HubRepo

logger = logging.getLogger(__name__)

BUNDLED_VOCAB = Path(__file__).parent / "data" / "vocab.txt"  # bert-base-uncased, 30,522 tokens
VOCAB_NAME = "vocab.txt"
TOKENIZER_JSON_NAME = "tokenizer.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"

DEFAULT_MODEL_MAX_LENGTH = 512  # rows of LXMERT's position-embedding table
MAX_CHARS_PER_WORD = 100  # longer words become [UNK] (BERT's rule)
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
TENSOR_TYPES = ("pt", "np")
SPECIAL_TOKEN_NAMES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")

# Constructor options that tokenizer_config.json may carry (the transformers layout plus ours).
_OPTION_NAMES = (
    "do_lower_case",
    "do_basic_tokenize",
    "never_split",
    *SPECIAL_TOKEN_NAMES,
    "tokenize_chinese_chars",
    "strip_accents",
    "clean_text",
    "wordpieces_prefix",
    "model_max_length",
)
# transformers writes this for "no known limit"; LXMERT's limit is its position table.
_TRANSFORMERS_NO_LIMIT = 10**20

# Unicode White_Space, which is what Rust's char::is_whitespace (used by `tokenizers`) tests.
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# CJK ideograph blocks that get spaces around each character. 0x2B920 (not 0x2B820) is the start
# used by `tokenizers`, so CJK Extension E's first 256 characters are not split there; we follow
# the fast tokenizer (transformers' slow one splits them).
_CJK_RANGES = (
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0x2F800, 0x2FA1F),
)
_WORD, _SPACE, _PUNCT = 0, 1, 2

# Decoding clean-up. The WordPiece decoder of `tokenizers` applies _DECODER_CLEANUP to each piece
# (so " ." is glued even without clean-up); clean_up_tokenization_spaces applies transformers' list,
# the same without " do not", to the whole string.
_DECODER_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" do not", " don't"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)
_SPACES_CLEANUP = tuple(pair for pair in _DECODER_CLEANUP if pair[0] != " do not")

_T = TypeVar("_T", bound="LxmertTokenizerBase")


class TokenizerNotFoundError(OSError):
    """The tokenizer files (vocab.txt or tokenizer.json) are neither in a local folder nor on the Hub."""


class BatchEncoding(dict):
    """Tokenizer output: input_ids, token_type_ids, attention_mask (+ optional keys).

    A dict, so `model(**encoding)` works; keys are also attributes (`encoding.input_ids`).
    Values are (batch, seq_len) lists, tensors or arrays; a single str input gives (seq_len,) lists.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; it has {', '.join(self)}") from None

    def to(self, device: Any) -> BatchEncoding:
        """Move every torch tensor to `device` (in place); returns self."""
        for key, value in self.items():
            if not callable(getattr(value, "to", None)):
                raise TypeError(
                    f"BatchEncoding.to needs torch tensors but {key} is a {type(value).__name__}; "
                    "call the tokenizer with return_tensors='pt'"
                )
        self.update({key: value.to(device) for key, value in self.items()})
        return self


def load_vocab(path: str | os.PathLike) -> list[str]:
    """Tokens by id from vocab.txt (one token per line) or from the WordPiece model of a tokenizer.json."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {path} does not exist; pass the path of a vocab.txt")
    if path.suffix == ".json":
        return _vocab_from_tokenizer_json(path)
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _vocab_from_tokenizer_json(path: Path) -> list[str]:
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    if model.get("type") != "WordPiece":
        raise ValueError(f"{path} holds a {model.get('type')!r} model; an LXMERT tokenizer needs WordPiece")
    by_id = {index: token for token, index in model["vocab"].items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"the vocabulary ids in {path} are not 0..{len(by_id) - 1} without gaps")
    return [by_id[index] for index in range(len(by_id))]


# ----------------------------------------------------------------------------------------------
# The pure-Python pipeline (what LxmertTokenizer runs; the `tokenizers` library does the same).
#
# Character classes come from Python's unicodedata while `tokenizers` uses Unicode 9.0 tables, so
# the two agree on every character assigned up to Unicode 9.0 (2016); characters added since
# (rare-script punctuation and combining marks) may be classed differently.


def _is_removed_char(char: str) -> bool:
    # Control, format, private-use and surrogate characters go; unassigned ones (Cn) stay, as in
    # `tokenizers` (transformers' slow tokenizer also drops Cn, which includes brand-new emoji).
    if char in "\t\n\r":
        return False
    return char in "\x00\ufffd" or unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs")


def _is_cjk_char(char: str) -> bool:
    code = ord(char)
    return any(start <= code <= end for start, end in _CJK_RANGES)


@functools.lru_cache(maxsize=1 << 16)
def _char_kind(char: str) -> int:
    if char in _WHITESPACE:
        return _SPACE
    if char in string.punctuation or unicodedata.category(char).startswith("P"):
        return _PUNCT
    return _WORD


def normalize_text(
    text: str,
    *,
    clean_text: bool = True,
    tokenize_chinese_chars: bool = True,
    strip_accents: bool = True,
    lowercase: bool = True,
) -> str:
    """BERT normalization, in the order of the `tokenizers` BertNormalizer."""
    if clean_text:
        text = "".join(" " if char in _WHITESPACE else char for char in text if not _is_removed_char(char))
    if tokenize_chinese_chars:
        text = "".join(f" {char} " if _is_cjk_char(char) else char for char in text)
    if strip_accents and not text.isascii():
        text = "".join(char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) != "Mn")
    if lowercase:
        # Character by character, as Rust does: str.lower() would also apply the final-sigma rule.
        text = text.lower() if "\u03a3" not in text else "".join(char.lower() for char in text)
    return text


def split_words(text: str, *, split_punctuation: bool = True) -> list[str]:
    """Split on whitespace and make each punctuation character a word of its own."""
    words: list[str] = []
    start = 0
    for index, char in enumerate(text):
        kind = _char_kind(char)
        if kind == _WORD or (kind == _PUNCT and not split_punctuation):
            continue
        if start < index:
            words.append(text[start:index])
        if kind == _PUNCT:
            words.append(char)
        start = index + 1
    if start < len(text):
        words.append(text[start:])
    return words


def wordpiece(word: str, vocab: Mapping[str, int], *, unk_token: str, prefix: str = "##") -> list[str]:
    """Greedy longest-match-first WordPiece; [UNK] for the whole word if a piece is missing."""
    if len(word) > MAX_CHARS_PER_WORD:
        return [unk_token]
    pieces = []
    start = 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


def truncate_pair(
    first: list[int], second: list[int] | None, budget: int, strategy: str
) -> tuple[list[int], list[int] | None]:
    """Cut `first` and `second` to at most `budget` ids together (special tokens not counted).

    longest_first follows `tokenizers` (transformers' fast tokenizers): if the shorter input fits
    in half the budget only the longer one is cut, else both get half and the longer input (the
    second one on a tie) keeps the odd id. transformers' slow tokenizers give that odd id to the
    first input instead when the first is not the longer one.
    """
    excess = len(first) + (len(second) if second is not None else 0) - budget
    if excess <= 0:
        return first, second
    if strategy == "longest_first":
        if second is None:
            return first[:budget], None
        shorter = min(len(first), len(second))
        short_keep, long_keep = (
            (shorter, budget - shorter) if 2 * shorter <= budget else (budget // 2, budget - budget // 2)
        )
        if len(first) > len(second):
            return first[:long_keep], second[:short_keep]
        return first[:short_keep], second[:long_keep]
    which, target = ("text", first) if strategy == "only_first" else ("text_pair", second)
    if target is None or len(target) <= excess:
        raise ValueError(
            f"truncation={strategy!r} must remove {excess} tokens from {which}, which has only "
            f"{0 if target is None else len(target)}; use truncation='longest_first' or a larger max_length"
        )
    if strategy == "only_first":
        return first[:-excess], second
    return first, second[:-excess]


# ----------------------------------------------------------------------------------------------


class LxmertTokenizerBase:
    """Everything both LXMERT tokenizers share; subclasses only turn text into tokens and ids.

    Args:
        vocab_file: vocab.txt (line index = id) or a tokenizer.json with a WordPiece model (only
            its vocabulary is read). Default: the bundled bert-base-uncased vocabulary.
        do_lower_case: lowercase the text.
        do_basic_tokenize: clean, split CJK characters, strip accents and split punctuation before
            WordPiece; False splits on whitespace only (and lowercases if do_lower_case).
        never_split: extra vocabulary tokens kept whole wherever they appear verbatim in the text,
            like the special tokens ([CLS], [SEP], [PAD], [UNK], [MASK] always are).
        tokenize_chinese_chars: put spaces around CJK ideographs.
        strip_accents: drop combining marks after NFD; None follows do_lower_case.
        clean_text: drop control characters and turn whitespace into spaces.
        wordpieces_prefix: the prefix of word-continuing pieces.
        model_max_length: longest input the model takes (LXMERT: 512); None for no limit.
    """

    # Files from_pretrained looks for, in order; the first one found is the vocab_file.
    vocab_file_names: tuple[str, ...] = (VOCAB_NAME, TOKENIZER_JSON_NAME)

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        *,
        do_lower_case: bool = True,
        do_basic_tokenize: bool = True,
        never_split: Sequence[str] | None = None,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        wordpieces_prefix: str = "##",
        model_max_length: int | None = DEFAULT_MODEL_MAX_LENGTH,
    ) -> None:
        self.vocab_file = Path(vocab_file) if vocab_file is not None else BUNDLED_VOCAB
        self._id_to_token = load_vocab(self.vocab_file)
        self._vocab = {token: index for index, token in enumerate(self._id_to_token)}
        self.do_lower_case = do_lower_case
        self.do_basic_tokenize = do_basic_tokenize
        self.tokenize_chinese_chars = tokenize_chinese_chars
        if strip_accents not in (None, True, False):
            raise ValueError(f"strip_accents must be None, True or False, got {strip_accents!r}")
        self.strip_accents = strip_accents
        self.clean_text = clean_text
        if not isinstance(wordpieces_prefix, str) or not wordpieces_prefix:
            raise ValueError(f"wordpieces_prefix must be a non-empty str, got {wordpieces_prefix!r}")
        self.wordpieces_prefix = wordpieces_prefix
        if model_max_length is not None and (not isinstance(model_max_length, int) or model_max_length < 1):
            raise ValueError(f"model_max_length must be a positive int or None, got {model_max_length!r}")
        self.model_max_length = model_max_length
        self._special_tokens = {
            "pad_token": pad_token,
            "unk_token": unk_token,
            "cls_token": cls_token,
            "sep_token": sep_token,
            "mask_token": mask_token,
        }
        self.never_split = list(dict.fromkeys(never_split or ()))
        for name, token in [*self._special_tokens.items(), *(("never_split", t) for t in self.never_split)]:
            if token not in self._vocab:
                raise ValueError(f"{name} {token!r} is not in the vocabulary {self.vocab_file}")
        self._warned_too_long = False
        self._build_pipeline()

    def _build_pipeline(self) -> None:
        """Set up the text -> tokens machinery from the options (read here once, as the Rust
        backend is built once: changing an option afterwards changes neither tokenizer)."""

    # -- the one step the two tokenizers implement differently ----------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Split `text` into WordPiece tokens (no [CLS]/[SEP] added)."""
        raise NotImplementedError

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        return [self.convert_tokens_to_ids(self.tokenize(text)) for text in texts]

    def _save_extra_files(self, folder: Path) -> list[Path]:
        return []

    # -- vocabulary and special tokens ----------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return len(self._id_to_token)

    def get_vocab(self) -> dict[str, int]:
        """A copy of the token -> id mapping."""
        return dict(self._vocab)

    @property
    def pad_token(self) -> str:
        return self._special_tokens["pad_token"]

    @property
    def unk_token(self) -> str:
        return self._special_tokens["unk_token"]

    @property
    def cls_token(self) -> str:
        return self._special_tokens["cls_token"]

    @property
    def sep_token(self) -> str:
        return self._special_tokens["sep_token"]

    @property
    def mask_token(self) -> str:
        return self._special_tokens["mask_token"]

    @property
    def pad_token_id(self) -> int:
        return self._vocab[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self._vocab[self.unk_token]

    @property
    def cls_token_id(self) -> int:
        return self._vocab[self.cls_token]

    @property
    def sep_token_id(self) -> int:
        return self._vocab[self.sep_token]

    @property
    def mask_token_id(self) -> int:
        return self._vocab[self.mask_token]

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys(self._special_tokens.values()))

    @property
    def all_special_ids(self) -> list[int]:
        return [self._vocab[token] for token in self.all_special_tokens]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token(s) -> id(s); tokens outside the vocabulary map to unk_token_id."""
        unk_id = self.unk_token_id
        if isinstance(tokens, str):
            return self._vocab.get(tokens, unk_id)
        return [self._vocab.get(token, unk_id) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Id(s) -> token(s)."""
        if hasattr(ids, "tolist"):  # tensors, arrays, numpy scalars
            ids = ids.tolist()
        if isinstance(ids, int):
            return self._id_to_token[self._check_id(ids)]
        return [self._id_to_token[self._check_id(index)] for index in _as_id_list(ids)]

    def _check_id(self, index: int) -> int:
        if not 0 <= index < len(self._id_to_token):
            raise ValueError(f"token id {index} is outside the vocabulary (ids 0..{len(self._id_to_token) - 1})")
        return index

    # -- special tokens around one or two sequences ---------------------------------------------

    def build_inputs_with_special_tokens(self, ids_0: list[int], ids_1: list[int] | None = None) -> list[int]:
        """[CLS] A [SEP] or [CLS] A [SEP] B [SEP]."""
        if ids_1 is None:
            return [self.cls_token_id, *ids_0, self.sep_token_id]
        return [self.cls_token_id, *ids_0, self.sep_token_id, *ids_1, self.sep_token_id]

    def create_token_type_ids_from_sequences(self, ids_0: list[int], ids_1: list[int] | None = None) -> list[int]:
        """0 for [CLS] A [SEP], 1 for B [SEP]."""
        if ids_1 is None:
            return [0] * (len(ids_0) + 2)
        return [0] * (len(ids_0) + 2) + [1] * (len(ids_1) + 1)

    def get_special_tokens_mask(
        self, ids_0: list[int], ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 where build_inputs_with_special_tokens puts a special token (or, for ids that already have
        them, wherever a special token id is), 0 elsewhere."""
        if already_has_special_tokens:
            if ids_1 is not None:
                raise ValueError("ids_1 must be None when already_has_special_tokens=True: pass the whole sequence")
            special = set(self.all_special_ids)
            return [1 if index in special else 0 for index in ids_0]
        if ids_1 is None:
            return [1] + [0] * len(ids_0) + [1]
        return [1] + [0] * len(ids_0) + [1] + [0] * len(ids_1) + [1]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens __call__ adds: 2 for one text, 3 for a pair."""
        return 3 if pair else 2

    # -- encoding -------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool = True,
        return_attention_mask: bool = True,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
    ) -> BatchEncoding:
        """Tokenize a text, a pair, or a batch of either into model inputs.

        padding: False/"do_not_pad", True/"longest" (pad to the longest in the batch) or "max_length"
            (to max_length, else model_max_length). Padding goes on the right.
        truncation: True/"longest_first", "only_first", "only_second", False/"do_not_truncate"; cuts to
            max_length (else model_max_length), special tokens included. None truncates only when
            max_length is given and padding is off, as transformers does.
        return_tensors: None (python lists), "pt" (torch.long) or "np" (int64).
        Returns input_ids, token_type_ids, attention_mask (+ special_tokens_mask, length), each
        (batch, seq_len), or (seq_len,) lists for a single str; tensors always have the batch axis.
        `length` is the padded length of each row.
        """
        texts, pairs, batched = _as_batch(text, text_pair)
        padding_strategy = _padding_strategy(padding)
        truncation_strategy, max_length = self._resolve_lengths(
            padding_strategy, truncation, max_length, pad_to_multiple_of, padding is False
        )
        if return_tensors not in (None, *TENSOR_TYPES):
            raise ValueError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
        num_special = self.num_special_tokens_to_add(pairs is not None) if add_special_tokens else 0
        if truncation_strategy == "only_second" and pairs is None:
            raise ValueError("truncation='only_second' cuts text_pair, but no text_pair was given")
        if truncation_strategy != "do_not_truncate" and max_length < num_special:
            raise ValueError(
                f"max_length={max_length} leaves no room for the text: the {num_special} special tokens "
                "alone are longer; raise max_length or pass add_special_tokens=False"
            )

        first_ids = self._encode_texts(texts)
        second_ids = self._encode_texts(pairs) if pairs is not None else [None] * len(texts)
        input_ids, token_type_ids, special_tokens_mask = [], [], []
        for index, (first, second) in enumerate(zip(first_ids, second_ids, strict=True)):
            if truncation_strategy != "do_not_truncate":
                try:
                    first, second = truncate_pair(first, second, max_length - num_special, truncation_strategy)
                except ValueError as err:
                    where = f"batch item {index}: " if batched else ""
                    raise ValueError(f"{where}{err} (max_length={max_length})") from None
            if add_special_tokens:
                input_ids.append(self.build_inputs_with_special_tokens(first, second))
                token_type_ids.append(self.create_token_type_ids_from_sequences(first, second))
                special_tokens_mask.append(self.get_special_tokens_mask(first, second))
            else:
                input_ids.append(first + (second or []))
                token_type_ids.append([0] * len(first) + [1] * len(second or []))
                special_tokens_mask.append([0] * len(input_ids[-1]))
        if max_length is None:
            self._warn_if_too_long(input_ids)

        columns = {"input_ids": input_ids}
        pad_values = {"input_ids": self.pad_token_id}
        if return_token_type_ids:
            columns["token_type_ids"], pad_values["token_type_ids"] = token_type_ids, 0
        if return_attention_mask:
            columns["attention_mask"], pad_values["attention_mask"] = [[1] * len(row) for row in input_ids], 0
        if return_special_tokens_mask:
            columns["special_tokens_mask"], pad_values["special_tokens_mask"] = special_tokens_mask, 1
        target = _padded_length(input_ids, padding_strategy, max_length, pad_to_multiple_of)
        if target is not None:
            for key, rows in columns.items():
                columns[key] = [row + [pad_values[key]] * (target - len(row)) for row in rows]
        if return_length:
            columns["length"] = [len(row) for row in columns["input_ids"]]

        if return_tensors is not None:
            return BatchEncoding({key: _to_tensor(key, rows, return_tensors) for key, rows in columns.items()})
        if not batched:
            return BatchEncoding({key: rows[0] for key, rows in columns.items()})
        return BatchEncoding(columns)

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
    ) -> list[int]:
        """Ids of one text or one pair, e.g. [CLS] A [SEP] B [SEP]."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str (use __call__ for a batch), got {type(text).__name__}")
        encoding = self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_token_type_ids=False,
            return_attention_mask=False,
        )
        return encoding["input_ids"]

    def _resolve_lengths(
        self,
        padding_strategy: str,
        truncation: bool | str | None,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        padding_off: bool,
    ) -> tuple[str, int | None]:
        # transformers' rules: max_length alone (no padding, truncation unset) means longest_first;
        # padding="max_length" or any truncation without max_length uses model_max_length.
        if truncation is None and max_length is not None and padding_off:
            truncation = True
        truncation_strategy = _truncation_strategy(truncation)
        if padding_strategy == "longest" and max_length is not None and truncation_strategy == "do_not_truncate":
            warnings.warn(
                f"max_length={max_length} is ignored: padding=True pads to the longest text and truncation is "
                "off; pass padding='max_length' to pad to it or truncation=True to cut to it",
                stacklevel=3,
            )
        if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
            raise ValueError(f"max_length must be a non-negative int, got {max_length!r}")
        if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        if max_length is None and (padding_strategy == "max_length" or truncation_strategy != "do_not_truncate"):
            if self.model_max_length is None:
                wanted = "padding='max_length'" if padding_strategy == "max_length" else "truncation"
                raise ValueError(f"{wanted} needs max_length=... (this tokenizer has no model_max_length)")
            max_length = self.model_max_length
        if (
            truncation_strategy != "do_not_truncate"
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"truncation to max_length={max_length} and padding to a multiple of {pad_to_multiple_of} "
                "cannot both hold; make max_length a multiple of pad_to_multiple_of"
            )
        return truncation_strategy, max_length

    def _warn_if_too_long(self, input_ids: list[list[int]]) -> None:
        if self.model_max_length is None or self._warned_too_long:
            return
        longest = max((len(row) for row in input_ids), default=0)
        if longest > self.model_max_length:
            logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence length for this "
                f"model ({longest} > {self.model_max_length}). Running this sequence through the model will "
                "result in indexing errors; pass truncation=True to cut it"
            )
            self._warned_too_long = True

    # -- decoding -------------------------------------------------------------------------------

    def decode(
        self, ids: int | Sequence[int], skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = True
    ) -> str:
        """Text of one sequence of ids (a list, or a 1-D tensor/array): pieces joined, "##" glued.

        Same output as transformers' LxmertTokenizerFast.decode: punctuation "." "," "?" "!" is
        always attached to the previous word (the WordPiece decoder of `tokenizers` does it);
        clean_up_tokenization_spaces also joins contractions ("do n't" -> "don't").
        """
        ids = _as_id_list(ids)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [index for index in ids if index not in special]
        pieces = []
        for position, token in enumerate(self.convert_ids_to_tokens(ids)):
            if position > 0:
                if token.startswith(self.wordpieces_prefix):
                    token = token[len(self.wordpieces_prefix) :]
                else:
                    token = " " + token
            pieces.append(_replace_all(token, _DECODER_CLEANUP))
        text = "".join(pieces)
        return _replace_all(text, _SPACES_CLEANUP) if clean_up_tokenization_spaces else text

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = True,
    ) -> list[str]:
        """decode for each row of a (batch, seq_len) list, tensor or array."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in sequences]

    # -- files ----------------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return {
            "do_lower_case": self.do_lower_case,
            "do_basic_tokenize": self.do_basic_tokenize,
            "never_split": self.never_split or None,
            **self._special_tokens,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "strip_accents": self.strip_accents,
            "clean_text": self.clean_text,
            "wordpieces_prefix": self.wordpieces_prefix,
            "model_max_length": self.model_max_length,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write vocab.txt, tokenizer_config.json, special_tokens_map.json (+ tokenizer.json for the
        fast tokenizer), in the layout transformers' from_pretrained also reads. Returns the paths."""
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"save_pretrained needs a folder, but {folder} is a file")
        folder.mkdir(parents=True, exist_ok=True)
        vocab_path = folder / VOCAB_NAME
        vocab_path.write_text("".join(token + "\n" for token in self._id_to_token), encoding="utf-8", newline="\n")
        added_tokens = {
            str(self._vocab[token]): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for token in sorted(self.all_special_tokens, key=self._vocab.__getitem__)
        }
        config = {
            "added_tokens_decoder": added_tokens,
            **self._options(),
            "clean_up_tokenization_spaces": True,
            "tokenizer_class": "LxmertTokenizer",
        }
        config_path = folder / TOKENIZER_CONFIG_NAME
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        map_path = folder / SPECIAL_TOKENS_MAP_NAME
        map_path.write_text(json.dumps(self._special_tokens, indent=2) + "\n", encoding="utf-8")
        written = [vocab_path, config_path, map_path, *self._save_extra_files(folder)]
        return tuple(str(path) for path in written)

    @classmethod
    def from_pretrained(
        cls: type[_T],
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        **overrides: Any,
    ) -> _T:
        """Load from a folder holding vocab.txt and/or tokenizer.json (+ tokenizer_config.json), or
        from a Hugging Face Hub id such as "unc-nlp/lxmert-base-uncased". `overrides` are constructor
        options (e.g. model_max_length=20) that win over tokenizer_config.json."""
        folder = Path(os.path.expanduser(os.fspath(name_or_path)))
        if folder.is_dir():
            files = {
                name: folder / name
                for name in (TOKENIZER_CONFIG_NAME, *cls.vocab_file_names)
                if (folder / name).is_file()
            }
            if not any(name in files for name in cls.vocab_file_names):
                raise TokenizerNotFoundError(
                    f"folder {folder} has neither {VOCAB_NAME} nor {TOKENIZER_JSON_NAME}; pass a folder that holds "
                    f"the tokenizer's {VOCAB_NAME}"
                )
        else:
            repo = HubRepo(
                os.fspath(name_or_path),
                {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only},
                hint=f"pass a local folder that holds the tokenizer's {VOCAB_NAME} (and {TOKENIZER_CONFIG_NAME})",
                error=TokenizerNotFoundError,
            )
            config_path = repo.get(TOKENIZER_CONFIG_NAME)
            vocab_path = repo.first(cls.vocab_file_names)
            files = {vocab_path.name: vocab_path, **({TOKENIZER_CONFIG_NAME: config_path} if config_path else {})}
        options = _read_config_options(files.get(TOKENIZER_CONFIG_NAME))
        options.update(overrides)
        vocab_file = next(files[name] for name in cls.vocab_file_names if name in files)
        return cls(vocab_file, **options)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
            f"model_max_length={self.model_max_length})"
        )


class LxmertTokenizer(LxmertTokenizerBase):
    """LXMERT's BERT WordPiece tokenizer in pure Python; same ids as LxmertTokenizerFast.

    Options: see LxmertTokenizerBase. Use it where the `tokenizers` library is not wanted, or to read
    how the tokenization works.
    """

    def _build_pipeline(self) -> None:
        verbatim = sorted({*self.all_special_tokens, *self.never_split}, key=len, reverse=True)
        # One capturing group: re.split then alternates text, token, text, ... (longest token first
        # at any position, like the Aho-Corasick match of `tokenizers`).
        self._verbatim_pattern = re.compile("(" + "|".join(map(re.escape, verbatim)) + ")")
        # Without basic tokenization only lowercasing remains, and words split on whitespace only.
        basic = self.do_basic_tokenize
        strip = self.do_lower_case if self.strip_accents is None else self.strip_accents
        self._normalize = functools.partial(
            normalize_text,
            clean_text=basic and self.clean_text,
            tokenize_chinese_chars=basic and self.tokenize_chinese_chars,
            strip_accents=basic and strip,
            lowercase=self.do_lower_case,
        )
        self._split_punctuation = self.do_basic_tokenize
        self._unk_token, self._prefix = self.unk_token, self.wordpieces_prefix

    def tokenize(self, text: str) -> list[str]:
        """Split `text` into WordPiece tokens (no [CLS]/[SEP] added); special tokens written in the
        text stay whole."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes a str, got {type(text).__name__}")
        tokens: list[str] = []
        for position, piece in enumerate(self._verbatim_pattern.split(text)):
            if position % 2 == 1:
                tokens.append(piece)
                continue
            for word in split_words(self._normalize(piece), split_punctuation=self._split_punctuation):
                tokens.extend(wordpiece(word, self._vocab, unk_token=self._unk_token, prefix=self._prefix))
        return tokens


class LxmertTokenizerFast(LxmertTokenizerBase):
    """LXMERT's BERT WordPiece tokenizer on the Rust `tokenizers` library (the one to use for speed).

    Options: see LxmertTokenizerBase. `backend_tokenizer` is the `tokenizers.Tokenizer`; its
    post-processor adds [CLS]/[SEP] and token types 0/1 and its decoder undoes WordPiece, so the
    saved tokenizer.json works on its own.
    """

    vocab_file_names = (TOKENIZER_JSON_NAME, VOCAB_NAME)

    def _build_pipeline(self) -> None:
        from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece

        backend = Tokenizer(
            WordPiece(
                self._vocab,
                unk_token=self.unk_token,
                continuing_subword_prefix=self.wordpieces_prefix,
                max_input_chars_per_word=MAX_CHARS_PER_WORD,
            )
        )
        if self.do_basic_tokenize:
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=self.clean_text,
                handle_chinese_chars=self.tokenize_chinese_chars,
                strip_accents=self.strip_accents,
                lowercase=self.do_lower_case,
            )
            backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        else:
            backend.normalizer = normalizers.Lowercase() if self.do_lower_case else normalizers.Sequence([])
            backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        cls, sep = self.cls_token, self.sep_token
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, self.cls_token_id), (sep, self.sep_token_id)],
        )
        backend.decoder = decoders.WordPiece(prefix=self.wordpieces_prefix)
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in self.all_special_tokens])
        backend.add_tokens([AddedToken(t, normalized=False) for t in self.never_split])
        self._backend = backend

    @property
    def backend_tokenizer(self) -> Any:
        """The `tokenizers.Tokenizer` doing the work."""
        return self._backend

    def tokenize(self, text: str) -> list[str]:
        """Split `text` into WordPiece tokens (no [CLS]/[SEP] added); special tokens written in the
        text stay whole."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes a str, got {type(text).__name__}")
        return self._backend.encode(text, add_special_tokens=False).tokens

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._backend.encode_batch(texts, add_special_tokens=False)]

    def _save_extra_files(self, folder: Path) -> list[Path]:
        path = folder / TOKENIZER_JSON_NAME
        self._backend.save(str(path))
        return [path]


# ----------------------------------------------------------------------------------------------
# Input checks and output assembly.


def _as_batch(text: Any, text_pair: Any) -> tuple[list[str], list[str] | None, bool]:
    """(texts, pairs or None, batched) from what __call__ received, with errors that say what is wrong."""
    if isinstance(text, str):
        if text_pair is not None and not isinstance(text_pair, str):
            raise TypeError(f"text is one str, so text_pair must be one str too, got {type(text_pair).__name__}")
        return [text], None if text_pair is None else [text_pair], False
    texts = _check_str_list("text", text)
    if text_pair is None:
        return texts, None, True
    if isinstance(text_pair, str):
        raise TypeError(f"text is a list of {len(texts)} str, so text_pair must be a list of str too, got one str")
    pairs = _check_str_list("text_pair", text_pair)
    if len(pairs) != len(texts):
        raise ValueError(f"text has {len(texts)} items but text_pair has {len(pairs)}; they must pair up one to one")
    return texts, pairs, True


def _check_str_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a str or a list of str, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            hint = " (pre-split words are not supported: join them with spaces)" if isinstance(item, list) else ""
            raise TypeError(f"{name}[{index}] must be a str, got {type(item).__name__}{hint}")
    return list(value)


def _padding_strategy(padding: bool | str) -> str:
    if padding is True:
        return "longest"
    if padding is False:
        return "do_not_pad"
    if padding not in PADDING_STRATEGIES:
        raise ValueError(f"padding must be True, False or one of {', '.join(PADDING_STRATEGIES)}; got {padding!r}")
    return padding


def _truncation_strategy(truncation: bool | str | None) -> str:
    if truncation is True:
        return "longest_first"
    if truncation is None or truncation is False:
        return "do_not_truncate"
    if truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(
            f"truncation must be True, False, None or one of {', '.join(TRUNCATION_STRATEGIES)}; got {truncation!r}"
        )
    return truncation


def _padded_length(
    input_ids: list[list[int]], padding: str, max_length: int | None, pad_to_multiple_of: int | None
) -> int | None:
    if padding == "do_not_pad" or not input_ids:
        return None
    target = max(len(row) for row in input_ids) if padding == "longest" else max_length
    if pad_to_multiple_of is not None:
        target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
    return target


def _to_tensor(key: str, rows: list[list[int]] | list[int], return_tensors: str) -> Any:
    if key == "length":  # one int per row
        shape: tuple[int, ...] = (len(rows),)
    else:
        lengths = sorted({len(row) for row in rows})
        if len(lengths) > 1:
            raise ValueError(
                f"cannot make one tensor of {key}: rows have lengths {lengths[0]} to {lengths[-1]}; pass "
                "padding=True (and truncation=True for texts longer than the model takes)"
            )
        shape = (len(rows), lengths[0] if lengths else 0)
    if return_tensors == "pt":
        import torch

        return torch.tensor(rows, dtype=torch.long).reshape(shape)
    import numpy as np

    return np.array(rows, dtype=np.int64).reshape(shape)


def _as_id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if any(isinstance(index, (list, tuple)) for index in ids):
        raise TypeError("expected one sequence of ids but got a batch; use batch_decode for (batch, seq_len) ids")
    return [int(index) for index in ids]


def _replace_all(text: str, replacements: tuple[tuple[str, str], ...]) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def _read_config_options(config_path: Path | None) -> dict[str, Any]:
    """Constructor options from a tokenizer_config.json (ours or transformers'); unknown keys are ignored."""
    if config_path is None:
        return {}
    config = json.loads(config_path.read_text(encoding="utf-8"))
    options = {name: config[name] for name in _OPTION_NAMES if name in config}
    for name in SPECIAL_TOKEN_NAMES:
        if isinstance(options.get(name), dict):  # older transformers saved AddedToken dicts
            options[name] = options[name]["content"]
    if options.get("model_max_length") is not None and options["model_max_length"] > _TRANSFORMERS_NO_LIMIT:
        options["model_max_length"] = DEFAULT_MODEL_MAX_LENGTH
    return options
