"""Prediction and the wire contract: turning requests into model calls and answers.

- :mod:`~tfdeploy.predict.wire`: the one prediction contract (TF Serving's JSON formats and
  feeding rules, and the R package's route).
- :mod:`~tfdeploy.predict.decimals`: float outputs with the decimals TF Serving writes.
- :mod:`~tfdeploy.predict.tfexample`: classify/regress ``examples`` as ``tf.Example`` protos,
  TF Serving's checks of those signatures and their results.
- :mod:`~tfdeploy.predict.predictions`: :class:`Predictions`, what ``predict_savedmodel`` returns.
- :mod:`~tfdeploy.predict.runtime`: a SavedModel loaded into TensorFlow as TF Serving loads it
  (``load_savedmodel``).
- :mod:`~tfdeploy.predict.export`, :mod:`~tfdeploy.predict.validate`,
  :mod:`~tfdeploy.predict.view`: writing, checking and viewing a model with TensorFlow.
- :mod:`~tfdeploy.predict.http`: the one HTTP client helper, errors mapped in one place.
- :mod:`~tfdeploy.predict.remote`: predicting through a server URL.

TensorFlow is imported (through :mod:`~tfdeploy.predict._tf`) only where a model is loaded or
written.
"""
