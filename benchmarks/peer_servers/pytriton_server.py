"""PyTriton: Triton Inference Server (C++) with a Python function calling a SavedModel's signature.

    LD_LIBRARY_PATH=<python's lib/> .venv-pytriton/bin/python peer_servers/pytriton_server.py \
        --model-name NAME --model-dir DIR --http-port P --grpc-port P --metrics-port P \
        --workspace DIR [--instances N]

Run in benchmarks/.venv-pytriton. Triton speaks the KServe v2 protocol:
``POST /v2/models/NAME/infer``. ``--instances N`` binds N copies of the inference function (N
model instances, Triton's knob for parallel execution; default 1). The model's
``max_batch_size`` is raised from PyTriton's default 4 to 64, the least that accepts 32-instance
requests (and tfdeploy's own default); everything else is PyTriton's default, including its
dynamic batcher.
"""

import argparse

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def make_infer(model_dir: str):
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    fn = loaded.signatures["serving_default"]

    @batch
    def infer(image):
        return {"prediction": fn(image=tf.constant(image))["prediction"].numpy()}

    infer.loaded = loaded  # keep the SavedModel's resources alive
    return infer, int(fn.structured_input_signature[1]["image"].shape[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workspace", required=True, help="PyTriton's files (a new folder)")
    parser.add_argument("--instances", type=int, default=1)
    args = parser.parse_args()
    functions = [make_infer(args.model_dir) for _ in range(args.instances)]
    width = functions[0][1]
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
    )
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=args.model_name,
            infer_func=[f for f, _ in functions],
            inputs=[Tensor(name="image", dtype=np.float32, shape=(width,))],
            outputs=[Tensor(name="prediction", dtype=np.float32, shape=(10,))],
            config=ModelConfig(max_batch_size=64),
        )
        triton.serve()


if __name__ == "__main__":
    main()
