"""The item every benchmark yields: an id, the chat to send, and the gold answer."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    id: str
    messages: tuple[dict, ...]
    gold: str
