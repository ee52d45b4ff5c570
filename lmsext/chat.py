"""``Chat``: a conversation history, as in LM Studio's SDK."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Iterable

from .errors import ConfigError

ROLES = ("system", "user", "assistant", "tool")
TOOL_FIELDS = ("tool_calls", "tool_call_id", "name")
"""Extra message keys kept for tool use: an assistant's ``tool_calls``, a tool result's ``tool_call_id`` / ``name``."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate (``"\\ud800"``: not encodable as UTF-8) replaced by U+FFFD.

    Python strings can hold them (from ``surrogateescape``-decoded bytes, JSON ``"\\ud800"``, …);
    llama.cpp and Jupyter's messaging need valid UTF-8, so lmsext defines this replacement for
    prompts and chat messages instead of failing on them.
    """
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Chat:
    """An ordered list of messages (``{"role": …, "content": …}``) with an optional system prompt.

    >>> chat = Chat("You are terse.")
    >>> chat.add_user_message("Hi")
    >>> chat.add_assistant_response("Hello")
    """

    def __init__(self, initial_prompt: str | None = None) -> None:
        self._messages: list[dict[str, Any]] = []
        if initial_prompt is not None:
            self.add_system_prompt(initial_prompt)

    @classmethod
    def from_history(cls, history: "Chat | str | dict[str, Any] | Iterable[dict[str, Any]]") -> "Chat":
        """Build a Chat from a string (one user message), ``{"messages": [...]}`` or a list of messages."""
        if isinstance(history, Chat):
            return history.copy()
        chat = cls()
        if isinstance(history, str):
            chat.add_user_message(history)
            return chat
        if isinstance(history, dict):
            history = history.get("messages", None)
            if history is None:
                raise ConfigError("a chat history dict needs a 'messages' list", key="history")
        if isinstance(history, (bytes, bytearray)) or not isinstance(history, Iterable):
            raise ConfigError(f"a chat history is a Chat, a string, {{'messages': [...]}} or a list of messages, "
                              f"not {type(history).__name__}", key="history", value=history)
        for message in history:
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ConfigError(f"each chat message needs 'role' and 'content', got {message!r:.60}", key="history")
            chat._add(message["role"], message["content"], **{k: message[k] for k in TOOL_FIELDS if k in message})
        return chat

    def _add(self, role: str, content: Any, **tool_fields: Any) -> None:
        if role not in ROLES:
            raise ConfigError(f"chat role {role!r:.40} is not one of {', '.join(ROLES)}", key="role", value=role)
        content = getattr(content, "content", content)  # accept a PredictionResult
        if content is None and tool_fields.get("tool_calls"):  # OpenAI's assistant message that only calls tools
            content = ""
        if not isinstance(content, str):
            raise ConfigError(f"chat message content must be text, got {type(content).__name__}", key="content")
        message: dict[str, Any] = {"role": role, "content": clean_text(content)}
        message.update({k: copy.deepcopy(v) for k, v in tool_fields.items() if v is not None})
        self._messages.append(message)

    def add_system_prompt(self, prompt: str) -> None:
        """Set (or replace) the system prompt, kept as the first message."""
        if self._messages and self._messages[0]["role"] == "system":
            self._messages.pop(0)
        self._add("system", prompt)
        self._messages.insert(0, self._messages.pop())

    def add_user_message(self, content: str) -> None:
        """Append a user message."""
        self._add("user", content)

    def add_assistant_response(self, content: Any, tool_calls: list[dict[str, Any]] | None = None) -> None:
        """Append the assistant's reply (text or a prediction result), with the ``tool_calls`` it made
        (``[{"id", "type": "function", "function": {"name", "arguments"}}]``, as chat templates take them)."""
        self._add("assistant", content, tool_calls=list(tool_calls) if tool_calls else None)

    def add_tool_result(self, content: str, tool_call_id: str | None = None, name: str | None = None) -> None:
        """Append a tool's result (role ``tool``) for the call ``tool_call_id`` of tool ``name``."""
        self._add("tool", content, tool_call_id=tool_call_id, name=name)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the messages."""
        return copy.deepcopy(self._messages)

    @property
    def system_prompt(self) -> str | None:
        """The system prompt, if any."""
        return self._messages[0]["content"] if self._messages and self._messages[0]["role"] == "system" else None

    def copy(self) -> "Chat":
        """An independent copy."""
        new = Chat()
        new._messages = copy.deepcopy(self._messages)
        return new

    def clear(self, keep_system_prompt: bool = True) -> None:
        """Forget the conversation (keeping the system prompt unless told otherwise)."""
        system = self.system_prompt if keep_system_prompt else None
        self._messages = []
        if system is not None:
            self.add_system_prompt(system)

    def to_dict(self) -> dict[str, Any]:
        """``{"messages": [...]}``, LM Studio's chat history shape."""
        return {"messages": self.messages}

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self):
        return iter(self.messages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chat) and other._messages == self._messages

    def __repr__(self) -> str:
        return f"Chat({len(self)} messages)"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text("\n".join(f"{m['role']}: {m['content']}" for m in self._messages) or "Chat(empty)")
