"""Versioned model directories: writing them atomically and loading them safely.

Layout of a model directory (``--out DIR`` of ``papertrader train``, ``--model DIR`` of the worker)::

    DIR/current              one line: the version id in use (replaced atomically with os.replace)
    DIR/<version>/model.pt   the weights: a state_dict only, loaded with torch.load(weights_only=True)
    DIR/<version>/metadata.json
    DIR/<version>/model_card.md
    DIR/<version>/evaluation.md   the per-fold table

``--model`` may also name a version directory itself (one holding ``metadata.json``); such a worker never
hot-swaps. The version id is ``<symbol>-<first 12 hex digits of the weights' sha256>``: content-addressed, so
training twice with the same seed on the same data gives the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papertrader.config import ConfigError
from papertrader.features import UnknownFeatureError, parse_feature

#: Format of metadata.json; a worker refuses other versions.
ARTIFACT_SCHEMA_VERSION = 1
#: Semantics of papertrader.features as the model saw them. Bump it whenever an indicator's definition changes,
#: so that models trained on the old definitions are refused instead of silently mis-fed.
FEATURE_CODE_VERSION = 1
POINTER = "current"
WEIGHTS = "model.pt"
METADATA = "metadata.json"
CARD = "model_card.md"
EVALUATION = "evaluation.md"

_REQUIRED = ("schema_version", "feature_code_version", "model_version", "arch", "feature_names", "seq_len",
             "hidden", "horizon", "scaler", "weights_sha256", "created_at")


class ModelError(ConfigError):
    """A model directory that cannot be used (missing, corrupt, incompatible). One line, names the file."""


@dataclass
class ModelFiles:
    """A resolved version directory and its validated metadata."""

    root: Path  # the --model directory
    path: Path  # the version directory
    metadata: dict[str, Any]
    pointer: bool  # resolved through DIR/current (hot swap possible)

    @property
    def version(self) -> str:
        return str(self.metadata["model_version"])


def tensor_sha256(state_dict: dict[str, Any]) -> str:
    """sha256 over the tensors (name, dtype, shape, bytes) in name order: independent of the file container."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def read_pointer(root: Path) -> str | None:
    pointer = root / POINTER
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"{pointer}: cannot read ({exc.strerror})") from None
    if not text or "/" in text or text.startswith("."):
        raise ModelError(f"{pointer}: expected one line with a version directory name, found {text[:60]!r}")
    return text


def resolve(root: Path | str, version: str | None = None) -> ModelFiles:
    """Find and validate the version directory for ``--model root`` (and an optional pinned version)."""
    root = Path(root)
    if not root.exists():
        raise ModelError(f"model directory {root} not found (train one with: papertrader train --data FILE.csv "
                         f"--out {root})")
    if (root / METADATA).is_file():
        if version is not None and (root / version / METADATA).is_file():
            return ModelFiles(root, root / version, load_metadata(root / version), False)
        meta = load_metadata(root)
        if version is not None and meta.get("model_version") != version:
            raise ModelError(f"{root}: holds model version {meta.get('model_version')}, not the pinned "
                             f"MODEL_VERSION={version}")
        return ModelFiles(root, root, meta, False)
    pinned = version is not None
    if version is None:
        version = read_pointer(root)
        if version is None:
            raise ModelError(f"model directory {root}: no {METADATA} and no '{POINTER}' file; expected a directory "
                             f"written by papertrader train --out")
    path = root / version
    if not (path / METADATA).is_file():
        raise ModelError(f"model directory {root}: version {version} has no {path / METADATA}")
    return ModelFiles(root, path, load_metadata(path), not pinned)


def load_metadata(path: Path) -> dict[str, Any]:
    """Read and validate ``metadata.json`` of a version directory."""
    file = path / METADATA
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{file}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file}: corrupt metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{file}: corrupt metadata (expected a JSON object)")
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise ModelError(f"{file}: corrupt metadata, missing key(s) {', '.join(missing)}")
    if meta["schema_version"] != ARTIFACT_SCHEMA_VERSION:
        raise ModelError(f"{file}: model format version {meta['schema_version']} is not supported by this worker "
                         f"(supports {ARTIFACT_SCHEMA_VERSION}); retrain with this papertrader version")
    if meta["feature_code_version"] != FEATURE_CODE_VERSION:
        raise ModelError(f"{file}: model was trained with feature code version {meta['feature_code_version']}, "
                         f"this worker computes version {FEATURE_CODE_VERSION}; retrain the model")
    names = meta["feature_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{file}: corrupt metadata, feature_names must be a non-empty list of names")
    for name in names:
        try:
            parse_feature(name)
        except UnknownFeatureError as exc:
            raise ModelError(f"{file}: feature list does not match this worker: {exc}") from None
    scaler = meta["scaler"]
    if (not isinstance(scaler, dict) or len(scaler.get("mean", [])) != len(names)
            or len(scaler.get("std", [])) != len(names)):
        raise ModelError(f"{file}: corrupt metadata, scaler mean/std must have one value per feature "
                         f"({len(names)})")
    if any(not isinstance(s, (int, float)) or not s > 0 for s in scaler["std"]):
        raise ModelError(f"{file}: corrupt metadata, scaler std values must be positive numbers")
    return meta


def load_weights(files: ModelFiles) -> dict[str, Any]:
    """The state_dict, checked against the metadata's sha256. Never unpickles arbitrary objects."""
    import torch

    file = files.path / WEIGHTS
    if not file.is_file():
        raise ModelError(f"{file}: missing")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise ModelError(f"{file}: corrupt or not a weights-only state_dict ({str(exc).splitlines()[0][:200]})") \
            from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{file}: not a state_dict of tensors")
    if tensor_sha256(state) != files.metadata["weights_sha256"]:
        raise ModelError(f"{file}: weights do not match metadata.json (sha256 differs); the directory is "
                         f"corrupt or mixed up")
    return state


def write_version(root: Path, version: str, state_dict: dict[str, Any], metadata: dict[str, Any],
                  texts: dict[str, str], make_current: bool = True) -> Path:
    """Write ``root/version`` atomically (temp dir + rename), then point ``root/current`` at it."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(state_dict, tmp / WEIGHTS)
    (tmp / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for name, text in texts.items():
        (tmp / name).write_text(text, encoding="utf-8")
    for file in tmp.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    final = root / version
    if final.exists():
        old = root / f".old-{version}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    if make_current:
        set_current(root, version)
    return final


def set_current(root: Path, version: str) -> None:
    """Point ``root/current`` at ``version`` atomically (a running worker hot-swaps to it)."""
    tmp = root / f".{POINTER}.tmp-{os.getpid()}"
    tmp.write_text(version + "\n", encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, root / POINTER)
