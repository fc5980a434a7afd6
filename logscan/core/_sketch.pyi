from typing import TypeVar

from logscan.core.aggregate import TopDomains
from logscan.core.diagnosis import Refusal, SpaceSaving

K = TypeVar("K")

def feed(rows: list[Refusal], at: list[int], groups: list[tuple[SpaceSaving, ...]], /) -> None: ...
def tally(
    top: TopDomains, domains: list[str], classes: list[K], other: str, /
) -> dict[tuple[str, K], int]: ...
