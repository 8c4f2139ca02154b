"""text8 next-character prediction (Collins et al. 2017, section 3.3).

text8 (Mahoney) is 10^8 characters of cleaned Wikipedia over 27 symbols (a-z and space). The
standard split is contiguous: the first 90% for training, the next 5% for validation, the last
5% for test. The text is cut into non-overlapping windows of ``seq_len + 1`` characters; each
window starts from the network's learned initial state, sees one-hot characters c_1..c_T and
predicts c_2..c_{T+1} at every step. Metric:

    bpc = mean over predicted characters of -log2 p(c_{t+1} | c_1..c_t)   (validation split)

and ``test_bpc`` on the test split.

The file is read from ``path``, else from ``<data_dir>/text8``, else downloaded from ``url``
(the zip) into ``data_dir``; its size and SHA-256 are checked either way.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from rnncap.base.errors import ConfigError
from rnncap.base.fields import bounded
from rnncap.tasks.base import Batch, TaskConfig, TaskDataModule

ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # symbol i is ALPHABET[i]
DOWNLOAD_TIMEOUT_S = 30
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_SIZE = 100_000_000  # bytes of the unzipped text
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"


def encode(raw: bytes) -> np.ndarray:
    """Bytes of text8 -> symbol codes 0..26 (uint8); any other byte is an error."""
    table = np.full(256, 255, dtype=np.uint8)
    table[np.frombuffer(ALPHABET.encode(), dtype=np.uint8)] = np.arange(len(ALPHABET))
    codes = table[np.frombuffer(raw, dtype=np.uint8)]
    if (codes == 255).any():
        at = int(np.argmax(codes == 255))
        raise ConfigError(
            f"the text8 file holds {raw[at : at + 1]!r} at byte {at}: "
            "only a-z and space are allowed"
        )
    return codes


class CharWindows(Dataset):
    """Non-overlapping windows of ``seq_len + 1`` codes: (one-hot inputs [T, 27], targets [T])."""

    def __init__(self, codes: Tensor, seq_len: int) -> None:
        count = (len(codes) - 1) // seq_len
        self.codes, self.seq_len, self.count = codes, seq_len, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Batch:
        return tuple(t[0] for t in self.__getitems__([index]))

    def __getitems__(self, indices: list[int]) -> Batch:
        starts = torch.as_tensor(indices) * self.seq_len
        window = self.codes[starts[:, None] + torch.arange(self.seq_len + 1)].long()  # [B, T+1]
        return F.one_hot(window[:, :-1], len(ALPHABET)).float(), window[:, 1:]


@dataclass
class Text8Config(TaskConfig):
    """``task=text8``: next-character prediction, 27 symbols, bits per character."""

    _target_: str = "rnncap.tasks.text8.Text8Task"
    name: str = "text8"
    # unroll length T: windows of T+1 characters, non-overlapping, each from the learned
    # initial state (open in the paper; 50 keeps the default run short)
    seq_len: int = bounded(50, ge=1)
    path: str | None = None  # a local text8 or text8.zip; null = <data_dir>/text8 (downloaded)
    data_dir: str = "data"  # cache directory, relative to where train.py runs
    url: str = TEXT8_URL  # the zip, downloaded once into data_dir
    size: int | None = bounded(TEXT8_SIZE, ge=1)  # bytes of the unzipped text; null = no check
    sha256: str | None = TEXT8_SHA256  # of the unzipped text; null = no check
    # contiguous split 90M / 5M / 5M: train, validation (bpc), test (test_bpc)
    val_fraction: float = bounded(0.05, gt=0)
    test_fraction: float = bounded(0.05, gt=0)
    # characters of validation and test that are scored (from their start); null = the whole
    # 5M (slow on CPU: use for final numbers)
    eval_chars: int | None = bounded(100_000, ge=2)
    batch_size: int | None = bounded(32, ge=1)  # windows per training (and evaluation) batch


class Text8Task(TaskDataModule):
    """Next-character prediction on text8; metric: bits per character on validation."""

    name = "text8"
    objective = "bpc"
    objective_direction = "minimize"
    config: Text8Config

    def __init__(self, config: Text8Config) -> None:
        super().__init__(config)
        self.test_set: CharWindows | None = None

    @classmethod
    def check_config(cls, node: Any) -> None:
        if node.val_fraction + node.test_fraction >= 1:
            raise ConfigError(
                f"task.val_fraction={node.val_fraction} + task.test_fraction="
                f"{node.test_fraction} must be < 1 (the rest is the training split)"
            )
        if node.path is not None and not Path(node.path).is_file():
            raise ConfigError(
                f"task.path={node.path} is not a file: point it at text8 (or text8.zip), or "
                f"set task.path=null to use {node.data_dir}/text8, downloaded from task.url"
            )

    @property
    def input_size(self) -> int:
        return len(ALPHABET)

    @property
    def output_size(self) -> int:
        return len(ALPHABET)

    # -- the file
    def text_file(self) -> Path:
        """The text8 file: ``path``, or ``<data_dir>/text8`` (downloaded if missing)."""
        if self.config.path is not None:
            return Path(self.config.path)
        target = Path(self.config.data_dir) / "text8"
        if not target.is_file():
            self.download(target)
        return target

    def download(self, target: Path) -> None:
        """Fetch the zip from ``url`` into ``target``'s folder and unzip its text there."""
        zipped = target.with_name("text8.zip")
        if not zipped.is_file():
            try:
                fetch(self.config.url, zipped)
            except (OSError, ValueError) as err:
                reason = str(err).splitlines()[0] if str(err) else ""
                raise ConfigError(
                    f"text8 is not at {target} and downloading task.url={self.config.url} failed "
                    f"({type(err).__name__}: {reason}): put the unzipped text8 at "
                    f"{target.resolve()}, or set task.path=/path/to/text8"
                ) from None
        part = target.with_name(target.name + ".part")
        part.write_bytes(read_text8(zipped))
        part.rename(target)

    def read(self) -> bytes:
        """The verified bytes of the text file (size and SHA-256 as configured)."""
        file = self.text_file()
        raw = read_text8(file)
        where = f"{file}" + (" (task.path)" if self.config.path is not None else "")
        if self.config.size is not None and len(raw) != self.config.size:
            raise ConfigError(
                f"text8 at {where} has {len(raw)} bytes, task.size={self.config.size} expected: "
                "replace it with the original (or set task.size for another text)"
            )
        if (
            self.config.sha256 is not None
            and hashlib.sha256(raw).hexdigest() != self.config.sha256.lower()
        ):
            raise ConfigError(
                f"text8 at {where} fails its checksum (task.sha256={self.config.sha256}): "
                "replace it with the original (or set task.sha256 for another text)"
            )
        return raw

    # -- data
    def split_bounds(self, total: int) -> tuple[int, int]:
        """End of the training split and of the validation split (test is the rest)."""
        n_val, n_test = (
            round(total * self.config.val_fraction),
            round(total * self.config.test_fraction),
        )
        return total - n_val - n_test, total - n_test

    def _window_set(self, codes: Tensor) -> CharWindows:
        if self.config.eval_chars is not None:
            codes = codes[: self.config.eval_chars]
        windows = CharWindows(codes, self.config.seq_len)
        if len(windows) == 0:
            raise ConfigError(
                f"task.seq_len={self.config.seq_len} is longer than an evaluation split "
                f"({len(codes)} characters): lower task.seq_len or raise task.eval_chars"
            )
        return windows

    def generate(self, generator: torch.Generator) -> tuple[CharWindows, CharWindows]:
        codes = torch.from_numpy(encode(self.read()))
        train_end, val_end = self.split_bounds(len(codes))
        train = CharWindows(codes[:train_end], self.config.seq_len)
        if len(train) == 0:
            raise ConfigError(
                f"task.seq_len={self.config.seq_len} is longer than the training split"
            )
        self.test_set = self._window_set(codes[val_end:])
        return train, self._window_set(codes[train_end:val_end])

    def settings(self) -> dict[str, Any]:
        return {"seq_len": self.config.seq_len, "eval_chars": self.config.eval_chars}

    # -- scoring
    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs.flatten(0, 1), batch[1].flatten())

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        nats = F.cross_entropy(outputs.transpose(1, 2), batch[1], reduction="none")  # [B, T]
        return {
            "bpc": nats.mean(1).sum() / math.log(2),
            "count": torch.tensor(float(len(nats))),
        }

    def evaluate(self, model: torch.nn.Module, params: int) -> dict[str, Any]:
        test = self.summarise(self.totals(model, self.eval_dataloader(self.test_set)), params)
        return {**super().evaluate(model, params), "test_bpc": test["bpc"]}


def fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (via a ``.part`` file: never a half-written ``dest``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            open(part, "wb") as out,
        ):
            shutil.copyfileobj(response, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.rename(dest)


def read_text8(file: Path) -> bytes:
    """The text of a text8 file, or of the ``text8`` member of a zip archive."""
    if not zipfile.is_zipfile(file):
        return file.read_bytes()
    with zipfile.ZipFile(file) as archive:
        names = archive.namelist()
        if "text8" not in names:
            raise ConfigError(f"{file} is a zip without a 'text8' member (has {names[:3]})")
        return archive.read("text8")
