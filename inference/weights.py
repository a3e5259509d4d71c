"""Reading checkpoint tensors (safetensors, or torch.load with weights_only=True), and mapping them
onto a model with explicit names: every tensor must be used and every shape must match, and the
error names the offending tensor and the file it came from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .errors import ModelError

# Buffers that old checkpoints carry and that hold no weights.
IGNORED = re.compile(r".*\.attn\.(bias|masked_bias|causal_mask)$|.*embed_positions\.weights?$")

WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")


class Stored:
    """A tensor of a safetensors file, read when the model takes it (`WeightMap.raw`), so a load holds
    the model built so far plus one checkpoint tensor, not the whole checkpoint besides the model
    (starcoderbase-1b shape, fp32 file loaded as int8: peak 6.4 GB when the file was read at once).
    Each read opens the file and closes it again: safetensors maps the file, and pages it touched
    count as resident for as long as the mapping lives."""

    __slots__ = ("path", "name")

    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name

    def load(self) -> torch.Tensor:
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as f:
                return f.get_tensor(self.name)
        except Exception as e:  # SafetensorError, OSError: changed or removed since it was listed
            raise ModelError(f"{self.path}: corrupt or truncated safetensors file ({e})") from None


def _read_safetensors(path: Path, lazy: bool = False) -> dict[str, torch.Tensor | Stored]:
    """The file's tensors; `lazy`: its header checked and each tensor a `Stored`, read when taken."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        if lazy:
            with safe_open(str(path), framework="pt") as f:
                return {name: Stored(path, name) for name in f.keys()}
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError...
        raise ModelError(f"{path}: corrupt or truncated safetensors file ({e})") from None


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: cannot read PyTorch weights ({type(e).__name__}: {e})".splitlines()[0]) from None
    if not isinstance(sd, dict):
        raise ModelError(f"{path}: expected a dict of tensors, found {type(sd).__name__}")
    return sd


def _read_one(path: Path, lazy: bool) -> dict[str, torch.Tensor | Stored]:
    if not path.is_file():
        raise ModelError(f"{path}: weight file listed in the index is missing")
    return _read_safetensors(path, lazy) if path.suffix == ".safetensors" else _read_bin(path)


def _inside(folder: Path, index: Path, name) -> Path:
    """A file named by a weight index, which must stay inside the model folder (checked on the name,
    so the symlinks of a Hugging Face cache snapshot still work)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelError(f"{index}: weight file {name!r} is outside the model folder; refusing to read it")
    return folder / name


def weight_files(folder: Path) -> list[Path]:
    """The files holding the weights, in the order Hugging Face prefers them."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: not a valid weight index ({e})") from None
        if not isinstance(weight_map, dict):
            raise ModelError(f"{path}: not a valid weight index (weight_map is not an object)")
        return [_inside(folder, path, f) for f in dict.fromkeys(weight_map.values())]
    raise ModelError(f"{folder}: no weights found (expected one of {', '.join(WEIGHT_FILES)})")


def read_checkpoint(folder: Path, lazy: bool = False) -> tuple[dict[str, torch.Tensor | Stored], dict[str, str]]:
    """All tensors in the folder, and for each the file it came from (for error messages). `lazy`:
    safetensors files' tensors are `Stored` entries, read when a WeightMap takes them (torch.load
    files are read whole either way)."""
    tensors: dict[str, torch.Tensor | Stored] = {}
    origin: dict[str, str] = {}
    for path in weight_files(folder):
        part = _read_one(path, lazy)
        for name, t in part.items():
            if not isinstance(t, (torch.Tensor, Stored)):
                raise ModelError(f"{path}: entry {name!r} is not a tensor")
            tensors[name] = t
            origin[name] = path.name
    return tensors, origin


class WeightMap:
    """Takes tensors by Hugging Face name, checking shapes; `finish()` rejects leftovers."""

    def __init__(self, tensors: dict[str, torch.Tensor], origin: dict[str, str], dtype: torch.dtype,
                 device: torch.device, aliases: dict[str, str] | None = None):
        self.tensors = {k: v for k, v in tensors.items() if not IGNORED.match(k)}
        self.origin = origin
        self.dtype = dtype
        self.device = device
        self.aliases = aliases or {}

    def has(self, name: str) -> bool:
        return name in self.tensors

    def raw(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The tensor in its stored dtype (removed from the pool)."""
        if name not in self.tensors:
            raise ModelError(f"checkpoint is missing tensor {name!r} (expected shape {list(shape)})")
        t = self.tensors.pop(name)
        if isinstance(t, Stored):
            t = t.load()
        if tuple(t.shape) != tuple(shape):
            raise ModelError(f"tensor {name!r} in {self.origin.get(name, '?')} has shape {list(t.shape)}, "
                             f"expected {list(shape)}")
        return t

    def take(self, name: str, *shape: int) -> torch.Tensor:
        """The tensor converted to the model dtype and device."""
        t = self.raw(name, shape)
        return t.to(device=self.device, dtype=self.dtype).contiguous()

    def finish(self) -> None:
        if self.tensors:
            names = sorted(self.tensors)
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise ModelError(f"unexpected tensor {names[0]!r} in {self.origin.get(names[0], '?')}{more} "
                             "(does the config match the weights?)")
