from collections.abc import Callable

def scan(chunk: str, rows: bool, /) -> tuple[int, list[str | tuple[str, ...]]] | None: ...
def tally(
    rows: list[tuple[str, ...]],
    kinds: dict[str, tuple[int, tuple[str, str], int, tuple[str, str, str]]],
    hours: dict[str, float],
    tx: dict[str, tuple[str, str]],
    memo: dict[str, str],
    each_reply: bool,
    learn_key: Callable[[str], object],
    learn_hour: Callable[[str], float | None],
    reasons_memo: dict[str, str],
    reason_of: Callable[[str], str],
    /,
) -> tuple[object, ...] | None: ...
