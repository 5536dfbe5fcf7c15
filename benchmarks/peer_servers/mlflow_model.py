"""Writes an MLflow pyfunc model that calls a SavedModel's ``serving_default`` signature.

    .venv-mlflow/bin/python peer_servers/mlflow_model.py SAVEDMODEL_DIR PYFUNC_DIR

Run in benchmarks/.venv-mlflow; ``mlflow models serve -m PYFUNC_DIR`` then serves it.
"""

import sys

import mlflow.pyfunc
import numpy as np


class SavedModelWrapper(mlflow.pyfunc.PythonModel):
    """Calls the SavedModel's serving_default signature on the instances."""

    def load_context(self, context):
        import tensorflow as tf

        self.tf = tf
        self.loaded = tf.saved_model.load(context.artifacts["savedmodel"])
        self.fn = self.loaded.signatures["serving_default"]
        self.width = self.fn.structured_input_signature[1]["image"].shape[-1]

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=np.float32).reshape(-1, self.width)
        return self.fn(image=self.tf.constant(x))["prediction"].numpy()


if __name__ == "__main__":
    mlflow.pyfunc.save_model(
        sys.argv[2], python_model=SavedModelWrapper(), artifacts={"savedmodel": sys.argv[1]}
    )
