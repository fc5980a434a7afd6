"""Where alerts go: the `[[alerts.receivers]]` entry, light enough for the config to import."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec


class Receiver(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where alerts go, as written under `[[alerts.receivers]]` in the TOML config."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    # Alertmanager: its base URL (".../api/v2/alerts" is appended); webhook: the full URL.
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$")]
    kind: Literal["alertmanager", "webhook"] = "alertmanager"
    timeout_s: Annotated[float, msgspec.Meta(gt=0.0, le=60.0)] = 5.0
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """The URL a POST goes to."""
        if self.kind == "alertmanager":
            return self.url.rstrip("/") + "/api/v2/alerts"
        return self.url
