"""Test hook of tests/cli/test_batch.py, loaded as ``sitecustomize`` by every Python process that has this folder on
its PYTHONPATH: a ``batch`` worker that dies mid-stack.

It acts only in a batch worker's ``segment`` run (``NAPARI_SAM2_BATCH_PARENT`` set) while the file named by
``NAPARI_SAM2_TEST_KILL_FILE`` exists; that file holds the name of the label store to act on and the frames the run
record must say are written. When the run saves such a record, the file is renamed to ``<name>.done`` (so that it
happens once) and the worker process, then the run itself, are killed with SIGKILL — as when a node is lost.
"""

import json
import os
import signal


def _install() -> None:
    request, parent = os.environ.get("NAPARI_SAM2_TEST_KILL_FILE"), os.environ.get("NAPARI_SAM2_BATCH_PARENT")
    if not request or not parent or not os.path.exists(request):
        return
    with open(request) as handle:
        wanted = json.load(handle)
    from napari_sam2.cli.run_record import RunRecord

    save = RunRecord.save

    def save_then_maybe_die(self: RunRecord) -> None:
        save(self)
        done = self.data.get("frames_written", 0)
        if (self.store_path.name == wanted["store"] and done >= wanted["frames"] and not self.data.get("complete")
                and os.path.exists(request)):
            os.rename(request, request + ".done")
            os.kill(int(parent), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    RunRecord.save = save_then_maybe_die


_install()
