from collections.abc import Callable

from logscan.parsers.base import Item

class Run:
    """A run of consecutive rows of one chunk (offsets into it), read by tally()."""

    first: str
    def __len__(self) -> int: ...
    def lines(self) -> list[str]: ...
    def rows(self) -> list[tuple[str, ...]]: ...

def scan(chunk: str, rows: bool, /) -> tuple[int, list[Item]] | None: ...
def tally(
    run: Run,
    kinds: dict[str, tuple[int, tuple[str, str], int, tuple[str, str, str]]],
    hours: dict[str, float],
    tx: dict[str, tuple[str, str]],
    each_reply: bool,
    walk: bool,
    learn_key: Callable[[str], object],
    learn_hour: Callable[[str], float | None],
    reason_of: Callable[[str], str],
    /,
) -> tuple[object, ...] | None: ...
