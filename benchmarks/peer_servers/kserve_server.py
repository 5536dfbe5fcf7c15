"""KServe's model server with a custom ``kserve.Model`` calling a SavedModel's signature.

    .venv-kserve/bin/python peer_servers/kserve_server.py --model_name NAME --model_dir DIR \
        --http_port PORT --grpc_port PORT [--workers N]

Run in benchmarks/.venv-kserve; every other option is KServe's own (and its default). The v1
route ``POST /v1/models/NAME:predict`` takes ``{"instances": [[...], ...]}`` and answers
``{"predictions": [...]}``. With ``--workers`` > 1 KServe starts its workers with
multiprocessing's spawn and pickles the model into each: the model reloads the SavedModel there.
"""

import argparse

import kserve
import numpy as np


class SavedModel(kserve.Model):
    """Calls the SavedModel's serving_default signature on the instances."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self) -> bool:
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(self.model_dir)
        self.fn = self.loaded.signatures["serving_default"]
        self.ready = True
        return self.ready

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("tf", "loaded", "fn"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.load()

    def predict(self, payload, headers=None, response_headers=None):
        x = self.tf.constant(np.asarray(payload["instances"], dtype=np.float32))
        return {"predictions": self.fn(image=x)["prediction"].numpy().tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    kserve.ModelServer().start([SavedModel(args.model_name, args.model_dir)])
