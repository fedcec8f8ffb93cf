"""The ranks' stop vote, on two real gloo processes: launching it never waits for the other rank, both read
the same outcome one boundary after a request, and settling reads it at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reliability.stop_vote import StopVote

TIMEOUT_S = 120  # two processes importing torch on a busy 2-core machine; a hang fails after this
MARKER_WAIT_S = 20
# Whether any rank had asked, as each call below returns it; the same on both ranks.
EXPECTED = [False, False, False, True, True, False, False, True]


def vote_on_rank(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    vote = StopVote.on_new_gloo_group()
    marker = Path(folder, "rank0-cast")
    outcomes = [vote.cast(False)]
    if rank == 0:
        marker.write_text("rank 0 went on before rank 1 voted")
        went_on = True
    else:  # votes only once rank 0 is past its launch: a blocking launch would never get here in time
        deadline = time.monotonic() + MARKER_WAIT_S
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        went_on = marker.exists()
    outcomes.append(vote.cast(False))
    outcomes.append(vote.cast(rank == 0))  # rank 0 is asked to stop: read one boundary later
    outcomes.append(vote.cast(rank == 0))
    outcomes.append(vote.settle(False))  # the boundary before still said stop
    outcomes.append(vote.settle(False))
    outcomes.append(vote.cast(False))  # nothing in flight after a settle
    outcomes.append(vote.settle(rank == 1))  # a request made at the settle itself, on rank 1 only
    vote.close()
    world = torch.ones(1)
    dist.all_reduce(world)  # the default group still works, and nothing of the vote is left in flight
    dist.destroy_process_group()
    result = {"outcomes": outcomes, "went_on": went_on, "world_sum": world.tolist()[0]}
    Path(folder, f"rank{rank}.json").write_text(json.dumps(result))


def test_the_vote_is_read_one_boundary_later_by_both_ranks_and_never_waits_to_launch(tmp_path: Path) -> None:
    context = mp.start_processes(
        vote_on_rank, args=(str(tmp_path),), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError(f"the vote hung for {TIMEOUT_S} s")
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for result in results:
        assert result["outcomes"] == EXPECTED
        assert result["world_sum"] == 2
    assert results[1]["went_on"], "rank 0's launch waited for rank 1's vote"
