import os
import subprocess
import sys

from truckctl.processes import alive, start_time


def test_a_running_process_is_alive_and_only_with_its_own_start_time() -> None:
    me = os.getpid()
    start = start_time(me)
    assert start is not None and alive(me) and alive(me, start)
    assert not alive(me, start + 1)  # the pid reused by another process


def test_a_finished_process_and_nonsense_are_not_alive() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    gone = int(child.stdout)
    assert start_time(gone) is None or not alive(gone, start_time(os.getpid()))
    for nonsense in (None, "123", 0, -1, True, 2**40):
        assert not alive(nonsense)
