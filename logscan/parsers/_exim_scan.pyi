from collections.abc import Callable, Mapping
from typing import Literal

_Direction = Literal["outbound", "inbound"]

def scan(chunk: str, rows: bool, /) -> tuple[int, list[str | tuple[str, ...]]] | None: ...
def runs(
    chunk: str,
    min_run: int,
    each_reply: bool,
    per_minute: bool,
    hour_of: Callable[[str], float | None],
    domain_of: Callable[[str], str],
    domains: dict[str, str],
    duration: Callable[[str], float | None],
    durations: dict[str, float | None],
    /,
) -> (
    tuple[
        int,
        list[str | tuple[str, ...]],
        list[
            tuple[
                tuple[str],
                int,
                bool,
                float,
                dict[str, int],
                list[tuple[_Direction, str]],
                list[str],
                dict[int, list[int]],
                dict[str, list[float]],
                list[tuple[int, _Direction, str, str, str, str, str]],
                list[float] | None,
                list[str] | None,
                dict[tuple[_Direction, str, str], int] | None,
                list[int] | None,
            ]
        ],
    ]
    | None
): ...
def set_reasons(
    phrases: tuple[tuple[str, str], ...], enhanced: Mapping[str, str], basic: Mapping[str, str], /
) -> None: ...
def reason(code: str, enhanced: str, reply: str, /) -> str | None: ...
def set_simd(level: int, /) -> int: ...
