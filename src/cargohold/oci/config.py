"""An image config read leniently for people: the fields they look for (configs vary)."""

from __future__ import annotations

from dataclasses import dataclass

from .mediatypes import (
    config_created,
    config_platform,
    parse_config,
)
from .platforms import Platform


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    """The parts of an image config people look for, read leniently (configs vary)."""

    created: str | None
    platform: Platform | None
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str]
    working_dir: str
    user: str
    labels: dict[str, str]
    exposed_ports: list[str]
    volumes: list[str]
    stop_signal: str
    layers: int
    history: list[dict[str, object]]

    @classmethod
    def parse(cls, data: bytes, what: str) -> ConfigSummary:
        doc = parse_config(data, what)
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        assert isinstance(config, dict)
        rootfs = doc.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        history = doc.get("history")
        return cls(
            created=config_created(doc),
            platform=config_platform(doc),
            entrypoint=_strings(config.get("Entrypoint")),
            cmd=_strings(config.get("Cmd")),
            env=_strings(config.get("Env")) or [],
            working_dir=_text(config.get("WorkingDir")),
            user=_text(config.get("User")),
            labels=_string_dict(config.get("Labels")),
            exposed_ports=sorted(map(str, config.get("ExposedPorts") or {}))
            if isinstance(config.get("ExposedPorts"), dict)
            else [],
            volumes=sorted(map(str, config.get("Volumes") or {}))
            if isinstance(config.get("Volumes"), dict)
            else [],
            stop_signal=_text(config.get("StopSignal")),
            layers=len(diff_ids) if isinstance(diff_ids, list) else 0,
            history=[
                {
                    "created": _text(h.get("created")),
                    "createdBy": _text(h.get("created_by")),
                    "comment": _text(h.get("comment")),
                    "emptyLayer": h.get("empty_layer") is True,
                }
                for h in (history if isinstance(history, list) else [])
                if isinstance(h, dict)
            ],
        )


def _string_dict(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _strings(value: object) -> list[str] | None:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [value]
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
