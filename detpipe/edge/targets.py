"""What an OTA target is: its path, its custom metadata, and how to read them back.

A target is one artifact for one device class and version, at the TUF target path
``<device-class>/<version>/model.onnx`` or, for a TensorRT engine,
``<device-class>/<version>/engines/<variant>/model.engine``: a version may carry several
engines (one per TensorRT version, compute capability, DLA core and precision, named by
:func:`engine_variant`, e.g. ``trt10.3.0-sm87-fp16``, ``trt8.6.2-sm72-dla0-int8``) and the
ONNX model beside them. Its ``custom`` metadata (signed with the targets key, like its
length and hashes)::

    {"version": "3", "device_class": "orin-sm87-trt10.3.0", "format": "engine",
     "file": "model.engine", "rollout_pct": 10, "groups": ["canary"],
     "rollback": false, "sidecar": {...}}      # the engine's sidecar (TensorRT, GPU, JetPack)

``rollback: true`` is set only by ``detpipe edge publish --rollback-to V``: it is the one
signed statement that lets a device go *down* to that version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tuf.api.metadata import TargetFile

from detpipe.errors import InvalidInput
from detpipe.store import version_key

FORMATS = {"engine": "model.engine", "onnx": "model.onnx"}
ENGINE_PRECISIONS = ("fp16", "int8", "fp32")  # in the order a device prefers them
_TRT_RE = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,4}){1,3}\Z")
_CC_RE = re.compile(r"^[0-9]{1,2}\.[0-9]\Z")
_CLASS_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}\Z")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_VARIANT_RE = re.compile(
    rf"^trt[0-9.]{{3,19}}-sm[0-9]{{2,3}}(-dla[0-9]{{1,2}})?-({'|'.join(ENGINE_PRECISIONS)})\Z"
)


def check_device_class(name: str) -> str:
    """A device class is a path segment: lower-case letters, digits, ``.``, ``_``, ``-``."""
    if not _CLASS_RE.match(name):
        raise InvalidInput(
            f"device class {name!r}: use lower-case letters, digits, '.', '_' or '-' (e.g. cpu)"
        )
    return name


def check_version(version: str) -> str:
    """A version is a path segment (``1.2.0``, ``3``, ``2026-12-01``)."""
    if not _VERSION_RE.match(version):
        raise InvalidInput(f"version {version!r}: use letters, digits, '.', '_', '+' or '-'")
    return version


def check_group(group: str) -> str:
    """A rollout group name (``canary``, ``site-7``)."""
    if not _GROUP_RE.match(group):
        raise InvalidInput(f"group {group!r}: use letters, digits, '.', '_' or '-'")
    return group


def check_pct(pct: int) -> int:
    """A rollout percentage: an integer in [0, 100] (TUF's canonical JSON has no floats)."""
    if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
        raise InvalidInput(f"rollout {pct!r}: a whole percentage from 0 to 100")
    return pct


def canonical(value: Any) -> Any:
    """``value`` with floats written as strings: canonical JSON (TUF signing) has no floats."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def engine_variant(sidecar: dict[str, Any]) -> str:
    """The path segment naming an engine's build: ``trt<TensorRT>-sm<cc>[-dla<n>]-<precision>``.

    From the sidecar's ``tensorrt_version``, ``gpu.compute_capability``,
    ``build_flags.dla_core`` and ``precision`` (``trt10.3.0-sm87-fp16``).

    Raises:
        InvalidInput: a field is missing or not what TensorRT writes there.
    """
    gpu = sidecar.get("gpu") if isinstance(sidecar.get("gpu"), dict) else {}
    flags = sidecar.get("build_flags") if isinstance(sidecar.get("build_flags"), dict) else {}
    trt, cc = str(sidecar.get("tensorrt_version", "")), str(gpu.get("compute_capability", ""))
    precision, dla = sidecar.get("precision"), flags.get("dla_core")
    if not _TRT_RE.match(trt):
        raise InvalidInput(f"engine sidecar: tensorrt_version {trt[:40]!r} (expected e.g. 10.3.0)")
    if not _CC_RE.match(cc):
        raise InvalidInput(f"engine sidecar: gpu.compute_capability {cc[:40]!r} (expected e.g. 8.7)")
    if precision not in ENGINE_PRECISIONS:
        raise InvalidInput(
            f"engine sidecar: precision {str(precision)[:40]!r} (one of {', '.join(ENGINE_PRECISIONS)})"
        )
    if dla is not None and (isinstance(dla, bool) or not isinstance(dla, int) or not 0 <= dla < 16):
        raise InvalidInput(f"engine sidecar: build_flags.dla_core {str(dla)[:40]!r} (a DLA core number)")
    return f"trt{trt}-sm{cc.replace('.', '')}" + (f"-dla{dla}" if dla is not None else "") + f"-{precision}"


def target_path(device_class: str, version: str, fmt: str, variant: str | None = None) -> str:
    """``<device-class>/<version>/model.onnx``, ``.../engines/<variant>/model.engine``.

    Without ``variant`` an engine gets the one-engine layout ``<class>/<version>/model.engine``
    (targets published before versions carried several engines).
    """
    head = f"{check_device_class(device_class)}/{check_version(version)}"
    if variant is None:
        return f"{head}/{FORMATS[fmt]}"
    if fmt != "engine" or not _VARIANT_RE.match(variant):
        raise InvalidInput(f"engine variant {variant[:80]!r}: not a name engine_variant() makes")
    return f"{head}/engines/{variant}/{FORMATS[fmt]}"


@dataclass(frozen=True)
class Release:
    """A target's signed description, as the agent reads it.

    Attributes:
        path: the TUF target path.
        version: the model version.
        device_class: the class it was published for.
        format: ``engine`` or ``onnx``.
        sha256: from the target's TUF hashes.
        length: bytes, from the target's TUF length.
        rollout_pct: share of the class's devices it goes to (by hash of device id and version).
        groups: device groups it goes to regardless of the percentage.
        rollback: a signed rollback target (may replace a newer version).
        sidecar: the engine's sidecar (engines only).
    """

    path: str
    version: str
    device_class: str
    format: str
    sha256: str
    length: int
    rollout_pct: int = 100
    groups: tuple[str, ...] = ()
    rollback: bool = False
    sidecar: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def file(self) -> str:
        """The file name in the slot (``model.onnx`` / ``model.engine``)."""
        return FORMATS[self.format]

    @property
    def sort_key(self) -> tuple[Any, ...]:
        return version_key(self.version)

    @classmethod
    def from_target(cls, target: TargetFile) -> Release:
        """Read a :class:`TargetFile` published by :mod:`detpipe.edge.publish`.

        Raises:
            InvalidInput: custom metadata missing or malformed (not a detpipe target).
        """
        c = target.custom
        try:
            fmt = str(c["format"])
            if fmt not in FORMATS:
                raise ValueError(f"format {fmt!r}")
            return cls(
                path=target.path,
                version=str(c["version"]),
                device_class=str(c["device_class"]),
                format=fmt,
                sha256=target.hashes["sha256"],
                length=int(target.length),
                rollout_pct=check_pct(int(c.get("rollout_pct", 100))),
                groups=tuple(str(g) for g in c.get("groups", ())),
                rollback=bool(c.get("rollback", False)),
                sidecar=c.get("sidecar"),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidInput(f"target {target.path}: not a detpipe OTA target ({e})") from None

    def custom(self) -> dict[str, Any]:
        """The ``custom`` dict to sign."""
        out: dict[str, Any] = {
            "version": self.version,
            "device_class": self.device_class,
            "format": self.format,
            "file": self.file,
            "rollout_pct": self.rollout_pct,
            "groups": list(self.groups),
            "rollback": self.rollback,
        }
        if self.sidecar is not None:
            out["sidecar"] = self.sidecar
        return canonical(out)
