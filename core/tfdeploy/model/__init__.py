"""The model on disk, read without TensorFlow.

- :mod:`~tfdeploy.model.protowire`: the protobuf wire format, read and written by hand.
- :mod:`~tfdeploy.model.textproto`: the protobuf text format (``saved_model.pbtxt``), read.
- :mod:`~tfdeploy.model.tensorproto`: tensor values and shapes as TF Serving's JSON shows them.
- :mod:`~tfdeploy.model.signatures`: what a SavedModel's signatures look like (plain data).
- :mod:`~tfdeploy.model.savedmodel`: finding a SavedModel, reading its info, files and digest.
- :mod:`~tfdeploy.model.bundle`: bundles (a SavedModel in TF Serving's layout with a manifest).

Nothing here imports TensorFlow, numpy or anything above this layer.
"""
