"""The target's TensorFlow-free messages against tensorflow-serving-api's real ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from google.protobuf import text_format
from tfdeploy_tfserving import client, model_config, protos


def test_get_model_status_bytes_match_the_real_messages() -> None:
    from tensorflow_serving.apis import get_model_status_pb2

    ours = protos.GetModelStatusRequest()
    ours.model_spec.name = "digits"
    ours.model_spec.version.value = 7
    real = get_model_status_pb2.GetModelStatusRequest.FromString(ours.SerializeToString())
    assert (real.model_spec.name, real.model_spec.version.value) == ("digits", 7)

    answer = get_model_status_pb2.GetModelStatusResponse()
    row = answer.model_version_status.add(
        version=3, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
    )
    row.status.error_message = "fine"
    decoded = protos.GetModelStatusResponse.FromString(answer.SerializeToString())
    (status,) = decoded.model_version_status
    assert (status.version, protos.VERSION_STATES[status.state], status.status.error_message) == (
        3,
        "AVAILABLE",
        "fine",
    )


def test_model_config_text_and_reload_request_match_the_real_messages() -> None:
    from tensorflow_serving.apis import model_management_pb2
    from tensorflow_serving.config import model_server_config_pb2

    config = model_config.set_model(
        model_config.parse(None, where="x"), "digits", "/models/digits", {"stable": 1, "canary": 2}
    )
    text = model_config.render(config)
    real = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (entry,) = real.model_config_list.config
    assert entry.name == "digits" and entry.base_path == "/models/digits"
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    assert list(entry.model_version_policy.specific.versions) == [1, 2]

    request = protos.ReloadConfigRequest()
    request.config.CopyFrom(config)
    real_request = model_management_pb2.ReloadConfigRequest.FromString(request.SerializeToString())
    assert real_request.config == real
    # A file written by someone else, with another model, keeps that model.
    other = "model_config_list { config { name: 'other' base_path: '/o' model_platform: 'tensorflow' } }"
    merged = model_config.set_model(
        model_config.parse(other, where="x"), "digits", "/d", {"stable": 4}
    )
    assert [c.name for c in merged.model_config_list.config] == ["other", "digits"]


def test_tensors_round_trip_through_the_real_tensor_proto() -> None:
    import tensorflow as tf

    for array in (
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([[1, -2]], dtype=np.int64),
        np.array([True, False]),
        np.array([b"a", b"bc"], dtype=object),
    ):
        real = tf.make_tensor_proto(array)
        ours = protos.TensorProto.FromString(real.SerializeToString())
        np.testing.assert_array_equal(client.from_tensor(ours), array)
        back = tf.make_ndarray(type(real).FromString(client.to_tensor(array).SerializeToString()))
        np.testing.assert_array_equal(back, array)
    # TensorFlow writes small constants as typed values, not tensor_content.
    filled = tf.make_tensor_proto(2.5, shape=[2, 2])
    np.testing.assert_array_equal(
        client.from_tensor(protos.TensorProto.FromString(filled.SerializeToString())),
        np.full((2, 2), 2.5, dtype=np.float32),
    )


def test_importing_the_plugin_and_its_messages_imports_no_tensorflow() -> None:
    code = (
        "import sys; import tfdeploy_tfserving, tfdeploy_tfserving.client; "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
