"""The processes of one data-parallel run: which one this is, the rank-0 rule, and what they exchange.

`torchrun` or `accelerate launch` starts N copies of a command and tells each its rank and the world size
(RANK, WORLD_SIZE). `processes()` joins them into one process group the first time it is asked, through
accelerate's PartialState: NCCL on GPUs, gloo on CPUs (or with ACCELERATE_USE_CPU=1). lm-eval's HFLM builds
its Accelerator on that same state, so the rank, world size and gathers of a CPU run are those of a GPU run.

The rank-0 rule: every process computes its share of every cell, rank 0 alone decides what is pending, gathers,
prints and writes (llmtrunc.runner applies it). A single process is rank 0 of 1 and needs no process group.
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from llmtrunc.errors import LLMTruncError


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of the run (rank 0 of 1 when nothing launched several)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that decides, gathers, prints and writes."""
        return self.rank == 0

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's `value`, in rank order, on rank 0; None on the others. The others return once rank 0
        holds every value: a gloo send completes before it is received, and a process that then left at once cut
        the transfer off (std::terminate: "terminate called without an active exception")."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        found = [None] * self.size if self.main else None
        with lost_process():
            dist.gather_object(value, found, dst=0)
            dist.barrier()
        return found

    def share(self, value: Any) -> Any:
        """Rank 0's `value`, on every process (what the others pass is ignored)."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        with lost_process():
            dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_size() -> int:
    """How many processes the launcher started (WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@functools.cache
def processes() -> Processes:
    """This process among the launched ones; the first call joins the process group (NCCL on GPUs, gloo on CPUs)."""
    if launched_size() == 1:
        return Processes()
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    _catch_stop()
    return Processes(state.process_index, state.num_processes)


LOST = ("Connection closed by peer", "Connection reset by peer")  # gloo's words for a peer that died


class lost_process:
    """A collective that fails because another process of the run died becomes one line (LLMTruncError)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if not isinstance(exc, RuntimeError) or isinstance(exc, LLMTruncError):
            return False
        import torch.distributed as dist

        if not (isinstance(exc, dist.DistError) or any(words in str(exc) for words in LOST)):
            return False
        first = str(exc).strip().splitlines()[0]
        raise LLMTruncError(f"another process of the run was lost ({first}); the cells in flight were not written") \
            from None


def _stopped(signum, frame):
    """The launcher stops the survivors when one process fails (torchrun: SIGTERM): one line and exit status 2 at
    once, not a silent death. Nothing half-done can reach the store: a cell is one atomic write. A process already
    on its way out (it has reported its own error) or a child forked outside the main thread just leaves."""
    if os.getpid() == _stopped.pid and not _stopped.leaving:
        sys.stdout.flush()
        print("llmtrunc: error: stopped by the launcher: another process of the run failed; the cells in flight were "
              "not written", file=sys.stderr, flush=True)
        os._exit(2)
    os._exit(128 + signum)


def _catch_stop() -> None:
    """SIGTERM -> `_stopped`, in this process only. A forked child starts with the default disposition: lm-eval's
    bootstrap pool stops its workers with SIGTERM, and a worker that inherited a Python-level handler drops a signal
    arriving before its interpreter is ready (CPython clears pending signals after a fork): the pool then waits
    for that worker forever. So the handler steps aside around every fork from the main thread."""
    _stopped.pid, _stopped.leaving = os.getpid(), False
    atexit.register(setattr, _stopped, "leaving", True)

    def handle(handler) -> None:
        if threading.current_thread() is threading.main_thread() and os.getpid() == _stopped.pid:
            signal.signal(signal.SIGTERM, handler)

    handle(_stopped)
    os.register_at_fork(before=lambda: handle(signal.SIG_DFL), after_in_parent=lambda: handle(_stopped))
