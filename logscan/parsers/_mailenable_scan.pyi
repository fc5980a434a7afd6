def scan(chunk: str, rows: bool, /) -> tuple[int, list[str | tuple[str, ...]]] | None: ...
def walk(
    rows: list[tuple[str, ...]],
    kinds: dict[str, int],
    tx: dict[str, tuple[str, str]],
    memo: dict[str, str],
    /,
) -> tuple[list[str], list[tuple[str, str]]]: ...
def tally(
    rows: list[tuple[str, ...]],
    kinds: dict[str, tuple[int, tuple[str, str], int, tuple[str, str, str]]],
    starts: dict[str, float],
    tx: dict[str, tuple[str, str]],
    memo: dict[str, str],
    each_reply: bool,
    /,
) -> tuple[object, ...] | None: ...
