"""The model bundle: the directory the trainer writes and the device trusts.

A bundle is ``manifest.json`` + ``model.tflite`` + ``labels.txt`` (+ optional variants). The
device verifies every file's sha256 before loading, because a half-copied model on an SD card
gives confident nonsense rather than an error. See ``models/README.md`` for the format.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BundleError
from .manifest import SCHEMA_VERSION, check_file_name, check_manifest
from .preprocess import InputContract, normalise_fit
from .safefile import VERIFY_TIMEOUT_S, FileData, read_regular, read_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleFile:
    """One named file of the bundle format: what it holds and which runtime reads it (if any)."""

    name: str
    holds: str
    runtime: str | None = None


# The one table of bundle file names; the trainer writes them, the runtimes read them.
MANIFEST = "manifest.json"
LABELS = "labels.txt"
DEFAULT_MODEL = "model.tflite"
EDGETPU_MODEL = "model_edgetpu.tflite"
ONNX_MODEL = "model.onnx"
REPORT = "report.html"
SIGNATURE = "manifest.sig"
BUNDLE_FILES = (
    BundleFile(MANIFEST, "what the device needs to run the bundle and what it measured"),
    BundleFile(LABELS, "one label a line, in output order"),
    BundleFile(DEFAULT_MODEL, "the default model (full-integer int8 unless asked otherwise)", "litert"),
    BundleFile("model_fp16.tflite", "float16-weight variant", "litert"),
    BundleFile("model_float.tflite", "float32 variant", "litert"),
    BundleFile(EDGETPU_MODEL, "the int8 model compiled for a Coral Edge TPU", "edgetpu"),
    BundleFile(ONNX_MODEL, "ONNX export (ONNX Runtime; TensorRT builds its engines from it)", "onnx"),
    BundleFile(REPORT, "the evaluation report"),
    BundleFile(SIGNATURE, "Ed25519 signature over manifest.json"),
)
ENGINE_DIR = "engines"  # TensorRT engines, built on the device from ONNX_MODEL (not in the manifest)
# How the name of a model file outside the table says which runtime reads it, first match wins:
# a bare model the user names, a variant, or an engine under ENGINE_DIR.
MODEL_ENDINGS: tuple[tuple[str, str], ...] = (
    ("_edgetpu.tflite", "edgetpu"),  # what edgetpu_compiler writes for <stem>.tflite
    (".tflite", "litert"),
    (".onnx", "onnx"),
    (".engine", "tensorrt"),
    (".plan", "tensorrt"),
)
# Bare model files the device runtimes load (LiteRT/Edge TPU, ONNX Runtime, TensorRT engines).
MODEL_SUFFIXES = tuple(dict.fromkeys("." + ending.rsplit(".", 1)[1] for ending, _ in MODEL_ENDINGS))


def variant_file(quant: str) -> str:
    """The file name of a quantized variant other than the default (``model_fp16.tflite``)."""
    return f"model_{quant}.tflite"


def runtime_for_file(name: str) -> str | None:
    """The runtime that reads the model file called ``name``: the table first, then the name's ending.

    None for a file no runtime reads (labels, report, manifest).
    """
    for entry in BUNDLE_FILES:
        if entry.name == name:
            return entry.runtime
    for ending, runtime in MODEL_ENDINGS:
        if name.endswith(ending):
            return runtime
    return None


def runtime_files(runtime: str) -> tuple[str, ...]:
    """The bundle files the table says ``runtime`` reads (``litert``: the default model and its variants)."""
    return tuple(entry.name for entry in BUNDLE_FILES if entry.runtime == runtime)


@dataclass(frozen=True)
class FileEntry:
    """What the manifest says about one file: its sha256 and (bundles since 0.3) its size."""

    sha256: str
    size: int | None = None

    @classmethod
    def of(cls, entry: Any) -> FileEntry:
        if isinstance(entry, dict):
            return cls(str(entry.get("sha256", "")), entry.get("bytes"))
        return cls(str(entry))  # the first bundles listed the bare hash


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file, read in chunks so a large model does not need to fit twice in RAM."""
    return read_regular(path, keep=False).sha256


def parse_labels(text: str) -> list[str]:
    """One label a line; blank trailing lines ignored; ``N label`` / ``N: label`` index prefixes stripped."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    labels = []
    for number, line in enumerate(lines):
        label = line.strip()
        head, _, rest = label.partition(" ")
        if rest and head.rstrip(":").isdigit() and int(head.rstrip(":")) == number:
            label = rest.strip()
        labels.append(label)
    return labels


def read_labels(path: Path) -> list[str]:
    """A labels file (see :func:`parse_labels`), read as a bounded regular file: never a FIFO or /dev/zero."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such labels file")
    labels = parse_labels(read_text(path, what="labels file"))
    if not labels:
        raise BundleError(f"{path}: labels file is empty")
    return labels


class BundleFiles:
    """The bytes of a bundle's files, each read once (safely) and checked against the manifest.

    Every runtime loads its model from :meth:`read`, never by path, so the bytes that run are
    the bytes that were hashed: a file swapped after verification is never served. The bytes
    are kept (a model is a few MB) so the pipeline's workers and the upload classifier share one
    verified copy instead of each reading the file again. Files that the manifest does not list
    (TensorRT engines built on the device, under ``engines/``) are read the same safe way, but
    have no hash to check.
    """

    def __init__(self, root: Path, entries: dict[str, FileEntry], deadline: float | None = None) -> None:
        self.root = root
        self.entries = entries
        self._deadline = deadline
        self._cache: dict[str, FileData] = {}
        self._lock = threading.Lock()

    def _read(self, name: str, keep: bool) -> FileData:
        entry = self.entries[name]
        data = read_regular(
            self.root / name,
            expected_size=entry.size,
            follow_symlinks=False,
            deadline=self._deadline,
            keep=keep,
        )
        if data.sha256 != entry.sha256:
            raise BundleError(
                f"{self.root / name}: sha256 does not match {MANIFEST} (file changed or copied incompletely)"
            )
        return data

    def check(self, name: str) -> None:
        """Hash one listed file without keeping its bytes (variants nobody asked to run)."""
        if name not in self._cache:
            self._read(name, keep=False)

    def read(self, name: str) -> FileData:
        """The verified bytes of a listed file, read on first use and kept."""
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._read(name, keep=True)
            return self._cache[name]

    def read_path(self, path: Path) -> FileData:
        """Bytes for a path: verified when it is a listed file of this bundle, else a safe unverified read."""
        path = Path(path)
        if path.parent.resolve() == self.root and path.name in self.entries:
            return self.read(path.name)
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            raise BundleError(f"{path}: not inside the bundle {self.root}") from None
        return read_regular(path, follow_symlinks=False)

    def finish_verifying(self) -> None:
        """The time bound applies to verification; later reads (a variant on demand) have none."""
        self._deadline = None


def read_model_file(path: str | Path) -> FileData:
    """The bytes of a model file outside any bundle (a bare model the user named), read safely once."""
    return read_regular(Path(path), follow_symlinks=True)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to run one model: file, labels, input contract and provenance.

    ``files`` holds the verified bytes of a bundle's files (None for a bare model); runtimes
    load from :meth:`read_model`, so what runs is what was verified.
    """

    model_path: Path
    labels: tuple[str, ...]
    contract: InputContract | None  # None: read it from the model itself (bare .tflite)
    background_index: int | None = None
    name: str = ""
    version: str = ""
    bundle_dir: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    files: BundleFiles | None = field(default=None, compare=False, repr=False)
    # A bare model's bytes, read once: every worker's interpreter is built from the same buffer
    # (one copy of the model in memory, not one per worker; measured 3.4 MB each for MobileNet V2).
    # ``dataclasses.replace`` hands the same dict on, so a spec's copies share it too.
    _bare: dict[Path, FileData] = field(default_factory=dict, compare=False, repr=False)

    def variant(self, filename: str) -> Path:
        """Path of another model file of the same bundle (e.g. ``model_fp16.tflite``)."""
        if self.bundle_dir is None:
            raise BundleError(f"{self.model_path}: a bare model has no variant {filename!r}")
        check_file_name(filename, f"{self.bundle_dir / MANIFEST}: model file")
        files = self.manifest.get("files", {})
        if filename not in files:
            raise BundleError(
                f"{self.bundle_dir / MANIFEST}: bundle has no file {filename!r} (it has {', '.join(sorted(files))})"
            )
        return self.bundle_dir / filename

    def read_model(self, path: str | Path | None = None) -> FileData:
        """The bytes of ``path`` (default: ``model_path``): verified ones for a bundle's file."""
        path = Path(path if path is not None else self.model_path)
        if self.files is not None:
            return self.files.read_path(path)
        if path not in self._bare:
            self._bare[path] = read_model_file(path)
        return self._bare[path]


def _contract_from_manifest(section: dict[str, Any], where: Path) -> InputContract:
    """The input contract of a manifest already shape-checked by :func:`check_manifest`."""
    height, width = (int(v) for v in section["size"])
    return InputContract(
        height=height,
        width=width,
        dtype=str(section.get("dtype", "uint8")),
        scale=float(section.get("scale", 0.0)),
        zero_point=int(section.get("zero_point", 0)),
        mean=float(section["mean"]),
        std=float(section["std"]),
        fit=normalise_fit(section["fit"]),
    )


def _bundle_root(bundle_dir: Path) -> Path:
    """The bundle's real directory (a ``current -> v3`` symlink is fine; its files may not be links)."""
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: not a bundle directory")
    return bundle_dir.resolve()


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Parse ``manifest.json`` (a bounded regular file) and check it against the one schema."""
    path = Path(bundle_dir) / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise BundleError(f"{path}: missing; a bundle directory needs {MANIFEST}, {DEFAULT_MODEL} and {LABELS}")
    text = read_text(_bundle_root(Path(bundle_dir)) / MANIFEST, what=MANIFEST, follow_symlinks=False)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    return check_manifest(manifest, path)


def _open_files(bundle_dir: Path, manifest: dict[str, Any], keep: tuple[str, ...]) -> BundleFiles:
    """Verify every listed file (size before hash, all within :data:`VERIFY_TIMEOUT_S`); keep the ``keep`` ones."""
    root = _bundle_root(bundle_dir)
    entries = {name: FileEntry.of(entry) for name, entry in manifest["files"].items()}
    for needed in (manifest["default_model"], LABELS):
        if needed not in entries:
            raise BundleError(f"{bundle_dir / MANIFEST}: 'files' does not list {needed}")
    files = BundleFiles(root, entries, deadline=time.monotonic() + VERIFY_TIMEOUT_S)
    for name in entries:
        path = bundle_dir / name
        if not (root / name).exists() and not (root / name).is_symlink():
            raise BundleError(f"{path}: listed in {MANIFEST} but missing")
        try:
            files.read(name) if name in keep else files.check(name)
        except BundleError as exc:
            raise BundleError(str(exc).replace(str(root / name), str(path), 1)) from None
    files.finish_verifying()
    return files


def verify_bundle(bundle_dir: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check every listed file is a regular file of its declared size and sha256; return the manifest."""
    manifest = manifest or read_manifest(bundle_dir)
    _open_files(Path(bundle_dir), manifest, ())
    return manifest


def load_bundle(bundle_dir: str | Path, model_file: str | None = None) -> ModelSpec:
    """Read and verify a bundle directory; ``model_file`` picks a variant instead of the default.

    The model's and the labels' bytes are kept as verified (``spec.files``) for the runtimes.
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    filename = manifest["default_model"] if model_file is None else model_file
    check_file_name(filename, f"{bundle_dir / MANIFEST}: model file")
    if filename not in manifest["files"]:
        raise BundleError(f"{bundle_dir / MANIFEST}: bundle has no model {filename!r}")
    files = _open_files(bundle_dir, manifest, (filename, LABELS))
    try:
        labels = parse_labels(files.read(LABELS).data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{bundle_dir / LABELS}: labels file is not UTF-8 text") from None
    if not labels:
        raise BundleError(f"{bundle_dir / LABELS}: labels file is empty")
    output = manifest["output"]
    num_classes = output.get("num_classes")
    if num_classes is not None and num_classes != len(labels):
        raise BundleError(
            f"{bundle_dir / LABELS}: {len(labels)} labels but {MANIFEST} says output.num_classes is {num_classes}"
        )
    contract = _contract_from_manifest(manifest["input"], bundle_dir / MANIFEST)
    return ModelSpec(
        model_path=bundle_dir / filename,
        labels=tuple(labels),
        contract=contract,
        background_index=output.get("background_index"),
        name=str(manifest["name"]),
        version=str(manifest["version"]),
        bundle_dir=bundle_dir,
        manifest=manifest,
        files=files,
    )


def resolve_model(path: str | Path, labels: str | Path | None = None, model_file: str | None = None) -> ModelSpec:
    """A bundle directory, or a bare ``.tflite`` with ``labels`` (or a ``labels.txt`` beside it).

    A bare model's input contract is read from the model itself when it is loaded.
    """
    path = Path(path)
    if path.is_dir():
        spec = load_bundle(path, model_file)
        if labels is not None:
            spec = dataclasses.replace(spec, labels=tuple(read_labels(Path(labels))))
        return spec
    if not path.exists():
        raise BundleError(f"{path}: no such model file or bundle directory")
    if runtime_for_file(path.name) is None:
        raise BundleError(f"{path}: expected a bundle directory or a {', '.join(MODEL_SUFFIXES)} model file")
    labels_path = Path(labels) if labels is not None else path.with_name(LABELS)
    label_list = tuple(read_labels(labels_path)) if labels_path.exists() or labels is not None else ()
    background = 0 if label_list and label_list[0].strip().lower() in ("background", "???") else None
    return ModelSpec(
        model_path=path, labels=label_list, contract=None, background_index=background, name=path.stem, version=""
    )


def write_bundle(
    out_dir: str | Path,
    models: dict[str, Path],
    labels: list[str],
    *,
    name: str,
    version: str,
    architecture: dict[str, Any],
    contract: InputContract,
    background_index: int | None = None,
    metrics: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
    extra: dict[str, Any] | None = None,
    default_model: str = DEFAULT_MODEL,
) -> Path:
    """Write a bundle: copy model files in, write labels, hash everything, then the manifest last.

    The manifest is written last (and atomically) so a bundle interrupted mid-copy never looks
    complete. Existing files in ``out_dir`` that are not part of the bundle are left alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for filename, source in {**models, **(extra_files or {})}.items():
        target = out / filename
        if Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
    (out / LABELS).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    for filename in [*models, LABELS, *(extra_files or {})]:
        target = out / filename
        files[filename] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture,
        "input": {
            "size": [contract.height, contract.width],
            "color": "RGB",
            "fit": contract.fit,
            "mean": contract.mean,
            "std": contract.std,
            "dtype": contract.dtype,
            "scale": contract.scale,
            "zero_point": contract.zero_point,
        },
        "output": {"num_classes": len(labels), "background_index": background_index},
        "files": files,
        "default_model": default_model,
        "metrics": metrics or {},
        **(extra or {}),
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / MANIFEST)
    log.info("wrote bundle %s (%s)", out, ", ".join(files))
    return out
