"""What a SavedModel's signatures look like, without TensorFlow.

These plain data classes are read from ``saved_model.pb`` by :mod:`tfdeploy.model.savedmodel` and
used by the prediction contract, the servers and the targets alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: TensorFlow's DataType enum (tensorflow/core/framework/types.proto): number, name, and the
#: numpy dtype that holds its values where there is one. The one dtype table of tfdeploy.
DTYPES: tuple[tuple[int, str, str | None], ...] = (
    (0, "DT_INVALID", None),
    (1, "DT_FLOAT", "float32"),
    (2, "DT_DOUBLE", "float64"),
    (3, "DT_INT32", "int32"),
    (4, "DT_UINT8", "uint8"),
    (5, "DT_INT16", "int16"),
    (6, "DT_INT8", "int8"),
    (7, "DT_STRING", "object"),
    (8, "DT_COMPLEX64", None),
    (9, "DT_INT64", "int64"),
    (10, "DT_BOOL", "bool"),
    (11, "DT_QINT8", None),
    (12, "DT_QUINT8", None),
    (13, "DT_QINT32", None),
    (14, "DT_BFLOAT16", "float32"),  # numpy has no bfloat16; TensorFlow converts on the way in
    (15, "DT_QINT16", None),
    (16, "DT_QUINT16", None),
    (17, "DT_UINT16", "uint16"),
    (18, "DT_COMPLEX128", None),
    (19, "DT_HALF", "float16"),
    (20, "DT_RESOURCE", None),
    (21, "DT_VARIANT", None),
    (22, "DT_UINT32", "uint32"),
    (23, "DT_UINT64", "uint64"),
)

#: DataType number -> name (``1`` -> ``"DT_FLOAT"``); the reference dtypes of TensorFlow 1.x
#: graphs are the number plus 100 (``101`` -> ``"DT_FLOAT_REF"``).
DTYPE_NAMES: dict[int, str] = {
    **{number: name for number, name, _ in DTYPES},
    **{number + 100: f"{name}_REF" for number, name, _ in DTYPES if number},
}

#: DataType name -> number (``"DT_FLOAT"`` -> ``1``).
DTYPE_NUMBERS: dict[str, int] = {name: number for number, name in DTYPE_NAMES.items()}

#: numpy dtype names for the TensorFlow dtypes that can travel as JSON or in a TensorProto.
NUMPY_DTYPES: dict[str, str] = {name: np for _, name, np in DTYPES if np is not None}

#: numpy dtype name -> the TensorFlow dtype that carries it (``"float32"`` -> ``"DT_FLOAT"``;
#: ``"object"``, numpy's dtype for strings, -> ``"DT_STRING"``).
DTYPE_FOR_NUMPY: dict[str, str] = {np: name for _, name, np in reversed(DTYPES) if np is not None}

#: JSON Schema type of one element of each JSON-representable dtype.
JSON_TYPES: dict[str, str] = {
    **{dt: "number" for dt in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16")},
    **{
        dt: "integer"
        for dt in (
            "DT_INT8",
            "DT_INT16",
            "DT_INT32",
            "DT_INT64",
            "DT_UINT8",
            "DT_UINT16",
            "DT_UINT32",
            "DT_UINT64",
        )
    },
    "DT_BOOL": "boolean",
    "DT_STRING": "string",
}

PREDICT_METHOD = "tensorflow/serving/predict"
#: TensorFlow's internal signature for the init op: listed by TF Serving's metadata, not served.
INIT_OP_SIGNATURE = "__saved_model_init_op"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature.

    ``shape`` is ``None`` when the rank is unknown; an unknown dimension is ``None``.
    ``dim_names`` holds the dimensions' names when any has one, and ``has_shape`` says whether
    the signature records a shape at all (both only matter to TF Serving's metadata).
    """

    key: str
    tensor_name: str
    dtype: str
    shape: tuple[int | None, ...] | None
    dim_names: tuple[str, ...] = ()
    has_shape: bool = True

    @property
    def json_representable(self) -> bool:
        """Whether values of this tensor can be sent or received as JSON."""
        return self.dtype in JSON_TYPES

    @property
    def numpy_dtype(self) -> str:
        """The numpy dtype that holds this tensor's values."""
        return NUMPY_DTYPES.get(self.dtype, "object")

    @property
    def instance_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one instance: the shape without its batch dimension."""
        if self.shape is None:
            return None
        return self.shape[1:]

    def shape_text(self, shape: tuple[int | None, ...] | None = None) -> str:
        """Render a shape as TensorFlow does, ``[-1, 64]``; ``shape`` defaults to this spec's."""
        shape = self.shape if shape is None else shape
        if shape is None:
            return "<unknown rank>"
        return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.key,
            "tensor_name": self.tensor_name,
            "dtype": self.dtype,
            "shape": None if self.shape is None else [-1 if d is None else d for d in self.shape],
        }

    def to_tf_serving(self) -> dict[str, Any]:
        """The TensorInfo JSON that TF Serving's ``/metadata`` answers with."""
        info: dict[str, Any] = {"dtype": self.dtype}
        if self.has_shape:
            if self.shape is None:
                info["tensor_shape"] = {"dim": [], "unknown_rank": True}
            else:
                names = self.dim_names or ("",) * len(self.shape)
                dims = [
                    {"size": str(-1 if d is None else d), "name": n}
                    for d, n in zip(self.shape, names, strict=True)
                ]
                info["tensor_shape"] = {"dim": dims, "unknown_rank": False}
        info["name"] = self.tensor_name
        return info


@dataclass(frozen=True)
class Signature:
    """A named signature: its inputs and outputs keyed by name, and its method.

    ``defaults`` holds the default values some inputs have (TensorFlow 2.15+), as the JSON
    TF Serving's metadata shows them.
    """

    name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method_name: str = PREDICT_METHOD
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "method_name": self.method_name,
            "inputs": [t.to_dict() for t in self.inputs.values()],
            "outputs": [t.to_dict() for t in self.outputs.values()],
        }

    def to_tf_serving(self) -> dict[str, Any]:
        """The SignatureDef JSON that TF Serving's ``/metadata`` answers with."""
        return {
            "inputs": {k: t.to_tf_serving() for k, t in self.inputs.items()},
            "outputs": {k: t.to_tf_serving() for k, t in self.outputs.items()},
            "method_name": self.method_name,
            "defaults": dict(self.defaults),
        }


@dataclass(frozen=True)
class MetaGraph:
    """One MetaGraphDef of a SavedModel: its tags and signatures.

    ``signatures`` are the ones a server serves; ``signature_defs`` all that the MetaGraph
    holds, TensorFlow's internal init-op signature included (TF Serving's metadata lists it).
    """

    tags: tuple[str, ...]
    signatures: Mapping[str, Signature]
    tensorflow_version: str = ""
    signature_defs: Mapping[str, Signature] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """What ``saved_model.pb`` says, plus the directory's size and content digest."""

    path: str
    meta_graphs: tuple[MetaGraph, ...]
    size_bytes: int
    digest: str
    files: tuple[str, ...] = field(default=())

    @property
    def serving(self) -> MetaGraph | None:
        """The MetaGraph tagged exactly ``serve`` (or the first that has ``serve``)."""
        tagged = [m for m in self.meta_graphs if SERVE_TAG in m.tags]
        exact = [m for m in tagged if m.tags == (SERVE_TAG,)]
        found = exact or tagged
        return found[0] if found else None

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """The serving signatures (empty when there is no ``serve`` tag)."""
        serving = self.serving
        return serving.signatures if serving else {}

    @property
    def signature_defs(self) -> Mapping[str, Signature]:
        """Every signature of the serving MetaGraph, the internal init-op one included."""
        serving = self.serving
        if serving is None:
            return {}
        return serving.signature_defs or serving.signatures

    @property
    def tensorflow_version(self) -> str:
        """The TensorFlow version that wrote the model, as recorded in it."""
        serving = self.serving or (self.meta_graphs[0] if self.meta_graphs else None)
        return serving.tensorflow_version if serving else ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as ``tfdeploy inspect --json`` prints it."""
        return {
            "path": self.path,
            "tags": [list(m.tags) for m in self.meta_graphs],
            "tensorflow_version": self.tensorflow_version,
            "size_bytes": self.size_bytes,
            "digest": self.digest,
            "signatures": {name: sig.to_dict() for name, sig in self.signatures.items()},
        }
