"""TF Serving's messages, built at run time from descriptors, without TensorFlow.

``tensorflow_serving.apis`` imports all of TensorFlow (seconds and hundreds of megabytes)
because its protos depend on ``tensorflow/core``. ``tfdeploy status`` must stay fast, so the
few messages the target sends are declared here with the same package, names and field
numbers as TF Serving's ``.proto`` files, in a private descriptor pool (so they never clash
with the real ones when TensorFlow is loaded too). The bytes on the wire and the text format
of model config files are the same; the tests check them against ``tensorflow-serving-api``.
Enums are declared as ``int32``: same wire encoding, and unknown values stay readable.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "bool": _F.TYPE_BOOL,
}

# (name, number, type, repeated?, oneof index) — a type starting with "." is a message.
Field = tuple[str, int, str, bool, int | None]


def _field(
    name: str, number: int, type_: str, repeated: bool = False, oneof: int | None = None
) -> Field:
    return (name, number, type_, repeated, oneof)


def _message(
    name: str,
    fields: list[Field],
    *,
    nested: list[descriptor_pb2.DescriptorProto] | None = None,
    oneofs: list[str] | None = None,
    map_entry: bool = False,
) -> descriptor_pb2.DescriptorProto:
    msg = descriptor_pb2.DescriptorProto(name=name)
    for oneof_name in oneofs or []:
        msg.oneof_decl.add(name=oneof_name)
    for field_name, number, type_, repeated, oneof in fields:
        f = msg.field.add(
            name=field_name, number=number, label=_REPEATED if repeated else _OPTIONAL
        )
        if type_.startswith("."):
            f.type, f.type_name = _F.TYPE_MESSAGE, type_
        else:
            f.type = _SCALARS[type_]
        if oneof is not None:
            f.oneof_index = oneof
    msg.nested_type.extend(nested or [])
    if map_entry:
        msg.options.map_entry = True
    return msg


def _map(entry: str, key: str, value: str) -> descriptor_pb2.DescriptorProto:
    return _message(entry, [_field("key", 1, key), _field("value", 2, value)], map_entry=True)


def _tensorflow_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="tfdeploy_tfserving/tensorflow.proto", package="tensorflow", syntax="proto3"
    )
    f.message_type.extend(
        [
            _message(
                "TensorShapeProto",
                [
                    _field("dim", 2, ".tensorflow.TensorShapeProto.Dim", True),
                    _field("unknown_rank", 3, "bool"),
                ],
                nested=[_message("Dim", [_field("size", 1, "int64"), _field("name", 2, "string")])],
            ),
            _message(
                "TensorProto",
                [
                    _field("dtype", 1, "int32"),
                    _field("tensor_shape", 2, ".tensorflow.TensorShapeProto"),
                    _field("version_number", 3, "int32"),
                    _field("tensor_content", 4, "bytes"),
                    _field("half_val", 13, "int32", True),
                    _field("float_val", 5, "float", True),
                    _field("double_val", 6, "double", True),
                    _field("int_val", 7, "int32", True),
                    _field("string_val", 8, "bytes", True),
                    _field("int64_val", 10, "int64", True),
                    _field("bool_val", 11, "bool", True),
                    _field("uint32_val", 16, "uint32", True),
                    _field("uint64_val", 17, "uint64", True),
                ],
            ),
            _message(
                "TensorInfo",
                [
                    _field("name", 1, "string"),
                    _field("dtype", 2, "int32"),
                    _field("tensor_shape", 3, ".tensorflow.TensorShapeProto"),
                ],
            ),
            _message(
                "SignatureDef",
                [
                    _field("inputs", 1, ".tensorflow.SignatureDef.InputsEntry", True),
                    _field("outputs", 2, ".tensorflow.SignatureDef.OutputsEntry", True),
                    _field("method_name", 3, "string"),
                ],
                nested=[
                    _map("InputsEntry", "string", ".tensorflow.TensorInfo"),
                    _map("OutputsEntry", "string", ".tensorflow.TensorInfo"),
                ],
            ),
        ]
    )
    return f


def _serving_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="tfdeploy_tfserving/serving.proto", package="tensorflow.serving", syntax="proto3"
    )
    f.dependency.extend(
        [
            "google/protobuf/wrappers.proto",
            "google/protobuf/any.proto",
            "tfdeploy_tfserving/tensorflow.proto",
        ]
    )
    s = ".tensorflow.serving."
    policy = "FileSystemStoragePathSourceConfig.ServableVersionPolicy"
    f.message_type.extend(
        [
            _message(
                "ModelSpec",
                [
                    _field("name", 1, "string"),
                    _field("version", 2, ".google.protobuf.Int64Value", oneof=0),
                    _field("version_label", 4, "string", oneof=0),
                    _field("signature_name", 3, "string"),
                ],
                oneofs=["version_choice"],
            ),
            _message(
                "PredictRequest",
                [
                    _field("model_spec", 1, s + "ModelSpec"),
                    _field("inputs", 2, s + "PredictRequest.InputsEntry", True),
                    _field("output_filter", 3, "string", True),
                ],
                nested=[_map("InputsEntry", "string", ".tensorflow.TensorProto")],
            ),
            _message(
                "PredictResponse",
                [
                    _field("model_spec", 2, s + "ModelSpec"),
                    _field("outputs", 1, s + "PredictResponse.OutputsEntry", True),
                ],
                nested=[_map("OutputsEntry", "string", ".tensorflow.TensorProto")],
            ),
            _message(
                "GetModelMetadataRequest",
                [
                    _field("model_spec", 1, s + "ModelSpec"),
                    _field("metadata_field", 2, "string", True),
                ],
            ),
            _message(
                "GetModelMetadataResponse",
                [
                    _field("model_spec", 1, s + "ModelSpec"),
                    _field("metadata", 2, s + "GetModelMetadataResponse.MetadataEntry", True),
                ],
                nested=[_map("MetadataEntry", "string", ".google.protobuf.Any")],
            ),
            _message(
                "SignatureDefMap",
                [_field("signature_def", 1, s + "SignatureDefMap.SignatureDefEntry", True)],
                nested=[_map("SignatureDefEntry", "string", ".tensorflow.SignatureDef")],
            ),
            _message(
                "StatusProto",
                [_field("error_code", 1, "int32"), _field("error_message", 2, "string")],
            ),
            _message(
                "ModelVersionStatus",
                [
                    _field("version", 1, "int64"),
                    _field("state", 2, "int32"),
                    _field("status", 3, s + "StatusProto"),
                ],
            ),
            _message("GetModelStatusRequest", [_field("model_spec", 1, s + "ModelSpec")]),
            _message(
                "GetModelStatusResponse",
                [_field("model_version_status", 1, s + "ModelVersionStatus", True)],
            ),
            _message(
                "FileSystemStoragePathSourceConfig",
                [],
                nested=[
                    _message(
                        "ServableVersionPolicy",
                        [
                            _field("latest", 100, s + policy + ".Latest", oneof=0),
                            _field("all", 101, s + policy + ".All", oneof=0),
                            _field("specific", 102, s + policy + ".Specific", oneof=0),
                        ],
                        oneofs=["policy_choice"],
                        nested=[
                            _message("Latest", [_field("num_versions", 1, "uint32")]),
                            _message("All", []),
                            _message("Specific", [_field("versions", 1, "int64", True)]),
                        ],
                    )
                ],
            ),
            _message(
                "ModelConfig",
                [
                    _field("name", 1, "string"),
                    _field("base_path", 2, "string"),
                    _field("model_type", 3, "int32"),
                    _field("model_platform", 4, "string"),
                    _field("model_version_policy", 7, s + policy),
                    _field("version_labels", 8, s + "ModelConfig.VersionLabelsEntry", True),
                ],
                nested=[_map("VersionLabelsEntry", "string", "int64")],
            ),
            _message("ModelConfigList", [_field("config", 1, s + "ModelConfig", True)]),
            _message(
                "ModelServerConfig",
                [
                    _field("model_config_list", 1, s + "ModelConfigList", oneof=0),
                    _field("custom_model_config", 2, ".google.protobuf.Any", oneof=0),
                ],
                oneofs=["config"],
            ),
            _message(
                "ReloadConfigRequest",
                [
                    _field("config", 1, s + "ModelServerConfig"),
                    _field("metric_names", 2, "string", True),
                ],
            ),
            _message("ReloadConfigResponse", [_field("status", 1, s + "StatusProto")]),
        ]
    )
    return f


def _build() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    for module in (wrappers_pb2, any_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.Add(_tensorflow_file())
    pool.Add(_serving_file())
    classes: dict[str, Any] = {}
    for full_name in (
        "tensorflow.TensorProto",
        "tensorflow.TensorShapeProto",
        "tensorflow.SignatureDef",
        "tensorflow.serving.ModelSpec",
        "tensorflow.serving.PredictRequest",
        "tensorflow.serving.PredictResponse",
        "tensorflow.serving.GetModelMetadataRequest",
        "tensorflow.serving.GetModelMetadataResponse",
        "tensorflow.serving.SignatureDefMap",
        "tensorflow.serving.GetModelStatusRequest",
        "tensorflow.serving.GetModelStatusResponse",
        "tensorflow.serving.ModelServerConfig",
        "tensorflow.serving.ReloadConfigRequest",
        "tensorflow.serving.ReloadConfigResponse",
    ):
        classes[full_name.rsplit(".", 1)[1]] = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(full_name)
        )
    return classes


_CLASSES = _build()

TensorProto: Any = _CLASSES["TensorProto"]
SignatureDef: Any = _CLASSES["SignatureDef"]
ModelSpec: Any = _CLASSES["ModelSpec"]
PredictRequest: Any = _CLASSES["PredictRequest"]
PredictResponse: Any = _CLASSES["PredictResponse"]
GetModelMetadataRequest: Any = _CLASSES["GetModelMetadataRequest"]
GetModelMetadataResponse: Any = _CLASSES["GetModelMetadataResponse"]
SignatureDefMap: Any = _CLASSES["SignatureDefMap"]
GetModelStatusRequest: Any = _CLASSES["GetModelStatusRequest"]
GetModelStatusResponse: Any = _CLASSES["GetModelStatusResponse"]
ModelServerConfig: Any = _CLASSES["ModelServerConfig"]
ReloadConfigRequest: Any = _CLASSES["ReloadConfigRequest"]
ReloadConfigResponse: Any = _CLASSES["ReloadConfigResponse"]

#: ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
VERSION_STATES = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}

#: Method paths of the two services.
PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
RELOAD_CONFIG = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
