"""A BentoML service whose ``predict`` API calls a SavedModel's ``serving_default`` signature.

    BENCH_SAVEDMODEL=DIR [BENCH_WORKERS=N] bentoml serve bentoml_service:SavedModelService

Run from benchmarks/.venv-bentoml. ``POST /predict`` takes ``{"instances": [[...], ...]}`` (the
API's one parameter, by name) and answers the probabilities as a JSON array. Without
BENCH_WORKERS the service has BentoML's default (one worker).
"""

import os

import bentoml
import numpy as np

_workers = os.environ.get("BENCH_WORKERS")
_config = {"workers": int(_workers)} if _workers else {}


@bentoml.service(**_config)
class SavedModelService:
    """Loads the SavedModel once per worker."""

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(os.environ["BENCH_SAVEDMODEL"])
        self.fn = self.loaded.signatures["serving_default"]

    @bentoml.api
    def predict(self, instances: np.ndarray) -> np.ndarray:
        """The probabilities of each instance."""
        x = self.tf.constant(instances, dtype=self.tf.float32)
        return self.fn(image=x)["prediction"].numpy()
