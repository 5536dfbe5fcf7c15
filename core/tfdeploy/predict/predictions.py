"""The :class:`Predictions` that ``predict_savedmodel`` returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np

from tfdeploy.predict import wire


class Predictions(Sequence[Any]):
    """One prediction per instance, as the prediction contract shapes it.

    Each entry is a bare value when the signature has one output and an object keyed by output
    name otherwise. ``print()`` shows ``Prediction 1:`` blocks as the R package did;
    :meth:`to_json` gives the contract's JSON answer and :meth:`to_numpy` the arrays.
    """

    def __init__(
        self,
        *,
        arrays: Mapping[str, np.ndarray] | None = None,
        rows: Sequence[Any] | None = None,
        output_names: Sequence[str] | None = None,
    ) -> None:
        if (arrays is None) == (rows is None):
            raise ValueError("give exactly one of arrays= or rows=")
        self._arrays = dict(arrays) if arrays is not None else None
        self._rows = list(rows) if rows is not None else None
        if output_names is None and self._arrays is not None:
            output_names = list(self._arrays)
        self.output_names: list[str] | None = list(output_names) if output_names else None

    @classmethod
    def from_answer(
        cls, body: Mapping[str, Any], output_names: Sequence[str] | None = None
    ) -> Predictions:
        """Build from an answer ``{"predictions": [...]}``, in TF Serving's format or the R
        package's (every output keyed by name, also a single one, which is unwrapped here so
        that the predictions are the same whatever answered them).

        ``output_names`` are the signature's, when the caller knows them: a TF Serving answer
        for one output carries no name.
        """
        rows = list(body["predictions"])
        keys = _shared_keys(rows)
        if keys is not None and len(keys) == 1 and (output_names is None or len(output_names) <= 1):
            (only,) = keys
            return cls(rows=[r[only] for r in rows], output_names=[only])
        names = sorted(keys) if keys is not None else output_names
        return cls(rows=rows, output_names=names)

    @property
    def rows(self) -> list[Any]:
        """The predictions as JSON values, one per instance."""
        if self._rows is None:
            assert self._arrays is not None
            self._rows = wire.rows(self._arrays)
        return self._rows

    def __len__(self) -> int:
        if self._arrays is not None:
            return len(next(iter(self._arrays.values())))
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self.rows[index]

    def to_json(self) -> str:
        """The contract's answer, ``{"predictions": [...]}``, as JSON text."""
        return wire.dumps({"predictions": self.rows}).decode()

    def to_numpy(self) -> np.ndarray | dict[str, np.ndarray]:
        """The predictions as one array (one output) or a dict of arrays keyed by output name."""
        if self._arrays is not None:
            arrays = self._arrays
        elif self.output_names and all(isinstance(r, Mapping) for r in self.rows):
            arrays = {n: np.asarray([r[n] for r in self.rows]) for n in self.output_names}
        else:
            return np.asarray(self.rows)
        return next(iter(arrays.values())) if len(arrays) == 1 else arrays

    def __repr__(self) -> str:
        return self.format()

    def format(self, limit: int | None = 10) -> str:
        """Text with a ``Prediction N:`` block per instance, at most ``limit`` of them."""
        lines: list[str] = []
        shown = self.rows if limit is None else self.rows[:limit]
        names = self.output_names
        for i, row in enumerate(shown, start=1):
            lines.append(f"Prediction {i}:")
            if isinstance(row, Mapping):
                for name, value in row.items():
                    lines.append(f"  {name}: {_short(value)}")
            elif names and len(names) == 1:
                lines.append(f"  {names[0]}: {_short(row)}")
            else:
                lines.append(f"  {_short(row)}")
            lines.append("")
        if limit is not None and len(self) > limit:
            lines.append(f"... and {len(self) - limit} more predictions")
        return "\n".join(lines).rstrip("\n")


def _shared_keys(rows: Sequence[Any]) -> list[str] | None:
    """The keys every row has, when every row is an object keyed by output name."""
    if not rows or not all(isinstance(r, Mapping) and not wire.is_b64(r) for r in rows):
        return None
    return list(rows[0])


def _short(value: Any, limit: int = 12) -> str:
    """A compact rendering: floats to 4 significant digits, long lists cut with their length."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        items = [_short(v, limit) for v in value[:limit]]
        more = f", … ({len(value)} values)" if len(value) > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_short(v, limit)}" for k, v in value.items()) + "}"
    return wire.dumps(value).decode()
