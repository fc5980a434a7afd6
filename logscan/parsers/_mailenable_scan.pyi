def scan(chunk: str, rows: bool, /) -> tuple[int, list[str | tuple[str, ...]]] | None: ...
def walk(
    rows: list[tuple[str, ...]],
    kinds: dict[str, int],
    tx: dict[str, tuple[str, str]],
    memo: dict[str, str],
    /,
) -> tuple[list[str], list[tuple[str, str]]]: ...
