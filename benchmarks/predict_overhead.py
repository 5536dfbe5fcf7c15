"""predict_savedmodel on 10,000 instances vs the raw signature function on the same batches.

    .venv/bin/python benchmarks/predict_overhead.py [--instances 10000] [--repeats 15]

Both sides run the same model on the same batches of ``batch_size`` instances; the baseline
gets numpy batches already in memory and calls the loaded signature directly (a session call
feeding the signature's input tensor, as tfdeploy and TF Serving run it), so the ratio is what
tfdeploy's contract (checking, converting, batching, joining) costs on top of TensorFlow. Two
inputs are measured: Python lists (what JSON gives) and a numpy array. For reference, the
signature function of ``tf.saved_model.load`` (how tfdeploy called models before it loaded
them as TF Serving does) is timed on the numpy batches too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    from tfdeploy import export_savedmodel, load_savedmodel, predict_savedmodel
    from tfdeploy.examples.digits import load_digits, train
    from tfdeploy.predict import _tf

    tf = _tf.tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_savedmodel(train(epochs=1), f"{tmp}/m")
        model = load_savedmodel(path)
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    images, _ = load_digits()
    array = np.resize(images, (args.instances, 64)).astype(np.float32)
    as_lists = array.tolist()
    sig = model.signature()
    call = _tf.session_callable(
        model._session, [sig.inputs["image"].tensor_name], [sig.outputs["prediction"].tensor_name]
    )
    batches = [array[i : i + args.batch_size] for i in range(0, len(array), args.batch_size)]
    list_batches = [b.tolist() for b in batches]

    def raw() -> object:
        return np.concatenate([call(b)[0] for b in batches])

    def raw_lists() -> object:
        return np.concatenate([call(np.asarray(b, dtype=np.float32))[0] for b in list_batches])

    def tf2_function() -> object:
        return np.concatenate([fn(image=tf.constant(b))["prediction"].numpy() for b in batches])

    def ours_lists() -> object:
        return predict_savedmodel(as_lists, model, batch_size=args.batch_size).to_numpy()

    def ours_numpy() -> object:
        return predict_savedmodel(array, model, batch_size=args.batch_size).to_numpy()

    assert np.allclose(raw(), ours_lists()) and np.allclose(raw_lists(), ours_numpy())
    # Each tfdeploy variant is compared with the raw signature fed the same kind of batches.
    pairs = {
        "numpy batches": (raw, ours_numpy),
        "Python-list batches": (raw_lists, ours_lists),
        "tf2 fn vs session": (tf2_function, raw),
    }
    print(
        f"{args.instances} instances, batches of {args.batch_size}, {args.repeats} interleaved runs"
    )
    print(
        f"{'input':<20} {'raw median ms':>14} {'tfdeploy median ms':>19} {'ratio':>6} {'ratio min-max':>14}"
    )
    for name, (baseline, ours) in pairs.items():
        base_times, our_times = [], []
        for _ in range(args.repeats):  # interleave so drift hits both sides alike
            base_times += timed(baseline, 1)
            our_times += timed(ours, 1)
        ratios = sorted(o / b for o, b in zip(our_times, base_times, strict=True))
        print(
            f"{name:<20} {statistics.median(base_times) * 1e3:>14.1f} "
            f"{statistics.median(our_times) * 1e3:>19.1f} {statistics.median(ratios):>6.2f} "
            f"{ratios[0]:>6.2f}-{ratios[-1]:<6.2f}"
        )


if __name__ == "__main__":
    main()
