"""Fixed windows counted in one process (app/rate_limits.py), on a clock the test moves."""
from app.rate_limits import MAX_KNOWN_WINDOWS, MemoryWindows


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_counts_until_its_end_then_a_new_one_starts():
    clock = Clock()
    windows = MemoryWindows(clock)
    assert [windows.hit("a", 60) for _ in range(3)] == [(1, 1060.0), (2, 1060.0), (3, 1060.0)]
    assert windows.hit("b", 60) == (1, 1060.0), "each key has its own window"
    clock.now = 1059.9
    assert windows.hit("a", 60) == (4, 1060.0)
    clock.now = 1060.0
    assert windows.hit("a", 60) == (1, 1120.0)


def test_ended_windows_are_dropped_once_too_many_are_kept():
    clock = Clock()
    windows = MemoryWindows(clock)
    for number in range(MAX_KNOWN_WINDOWS):
        windows.hit(f"client-{number}", 1)
    windows.hit("live", 60)
    clock.now += 2
    windows.hit("new", 60)
    assert windows.hit("live", 60) == (2, 1060.0), "a window still running is kept"
    assert len(windows._windows) == 2
