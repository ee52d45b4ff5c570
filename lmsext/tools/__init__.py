"""Tools and ``act()``: LM Studio's tool use on any loaded model.

* :mod:`.definitions` — :class:`Tool` (a ToolDefinition and its Python function), :func:`tool_from_function`.
* :mod:`.parsing` — tool calls parsed from the output (Qwen/Hermes, Llama 3.x JSON, Mistral formats).
* :mod:`.forcing` — ``rawTools.force``: the output constrained to one well-formed call.
* :mod:`.act` — the multi-round loop behind :meth:`lmsext.LLM.act`.
* :mod:`.view` — a notebook display of each round (call, arguments, result) as it happens.

The ``rawTools`` setting itself (``ToolDefinition``, ``ToolFunctionDefinition``) is in :mod:`lmsext.config.tools`.
"""

from ..config.tools import RawToolsSetting, ToolDefinition, ToolFunctionDefinition
from .act import ActResult, PredictionRoundResult, ToolCallOutcome, act, run_tool_call
from .definitions import Tool, as_tools, tool_from_function
from .forcing import forced_call_schema, template_tool_list, tool_config
from .parsing import ParsedToolCalls, ToolCallRequest, parse_tool_calls
from .view import ActView

__all__ = [
    "ActResult", "ActView", "ParsedToolCalls", "PredictionRoundResult", "RawToolsSetting", "Tool", "ToolCallOutcome",
    "ToolCallRequest", "ToolDefinition", "ToolFunctionDefinition", "act", "as_tools", "forced_call_schema",
    "parse_tool_calls", "run_tool_call", "template_tool_list", "tool_config", "tool_from_function",
]
