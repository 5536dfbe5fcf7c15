"""What a killed process leaves in the temporary folder is removed by the next tfdeploy run;
what a living process holds, or a user's TensorBoard logs, is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tfdeploy.model import workdir
from tfdeploy.model.bundle import package

HOLD = """
import sys, time
from tfdeploy.model.bundle import Bundle
bundle = Bundle.open(sys.argv[1])
print(bundle.model_dir, flush=True)   # unpacked into a private directory
time.sleep(600)
"""


def hold_unpacked(archive: Path, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that unpacked ``archive`` and is still alive; and where it unpacked it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(archive)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert process.stdout is not None
    model_dir = Path(process.stdout.readline().strip())
    private = model_dir
    while private.parent != tmp:
        private = private.parent
    return process, private


def test_a_killed_process_leaves_nothing_after_the_next_run(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    archive = package(digits_savedmodel, name="digits", output_dir=tmp_path).path
    killed, left = hold_unpacked(archive, tmp)
    alive, held = hold_unpacked(archive, tmp)
    try:
        assert left.name.startswith("tfdeploy-bundle-") and (left / ".lock").is_file()
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert left.is_dir()  # kill -9: nothing could clean up
        # Older tfdeploy versions left folders without a lock; a day later they go too.
        legacy_old = tmp / "tfdeploy-tfserving-abc123"
        legacy_new = tmp / "tfdeploy-bundle-def456"
        view = tmp / "tfdeploy-view-xyz"
        for folder in (legacy_old, legacy_new, view):
            (folder / "1").mkdir(parents=True)
        day_ago = time.time() - 2 * 24 * 3600
        os.utime(legacy_old, (day_ago, day_ago))
        os.utime(view, (day_ago, day_ago))
        # The next run: any command that unpacks a bundle.
        run = subprocess.run(
            [sys.executable, "-m", "tfdeploy", "inspect", str(archive)],
            env={**os.environ, "TMPDIR": str(tmp)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert not left.exists()
        assert not legacy_old.exists()
        assert held.is_dir(), "the living process's directory was removed"
        assert legacy_new.is_dir() and view.is_dir()
        # And that run removed its own directory when it ended.
        assert sorted(p.name for p in tmp.iterdir()) == sorted(
            [held.name, legacy_new.name, view.name]
        )
    finally:
        alive.kill()
        alive.wait(timeout=30)
    assert workdir.sweep(tmp) == [held]


def test_what_a_killed_package_or_export_wrote_aside_is_removed_by_the_next(
    digits_savedmodel: Path, tmp_path: Path
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(finished.stdout)  # a process id that no longer runs
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / f".digits-1.tar.gz.tmp-{dead}-abc123"
    leftover.write_bytes(b"half an archive")
    ours = out / f".digits-1.tar.gz.tmp-{os.getpid()}-def456"  # a living writer's
    ours.write_bytes(b"being written")
    package(digits_savedmodel, name="digits", output_dir=out)
    assert not leftover.exists() and ours.exists()
    assert (out / "digits-1.tar.gz").is_file()

    from tfdeploy.predict import _tf
    from tfdeploy.predict.export import export_savedmodel

    tf = _tf.tensorflow()

    class Double(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: object) -> dict[str, object]:
            return {"y": x * 2.0}

    staged = tmp_path / f".exported.tmp-{dead}-ghi789"
    (staged / "model").mkdir(parents=True)
    export_savedmodel(Double(), tmp_path / "exported")
    assert not staged.exists()
    assert (tmp_path / "exported" / "saved_model.pb").is_file()
