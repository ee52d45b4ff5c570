"""Request fields → :class:`~lmsext.LoadModelConfig` / :class:`~lmsext.PredictionConfig`, a 400 naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable

from ..config import GpuSetting, LoadModelConfig, PredictionConfig
from ..config.gpu import REPORTED_LAYER_KEYS
from ..config.load import REPORT_ONLY_KEYS
from ..errors import ConfigError
from .errors import bad_request, short
from .validation import suggest

# ------------------------------------------------------------------------------------------ configs


def load_config(raw: Any, param: str = "config", check: Callable[[LoadModelConfig], None] | None = None
                ) -> LoadModelConfig:
    """The LoadModelConfig for a REST ``config`` object (snake_case names only), or a 400; ``check`` (the
    engine's ``check_load_config``) refuses what the engine cannot take, named by the request's field."""
    if raw is None:
        return LoadModelConfig()
    if not isinstance(raw, dict):
        raise bad_request(f"{param} must be an object of load settings, not {type(raw).__name__}", param=param)
    names = LoadModelConfig.field_names("snake") + REPORT_ONLY_KEYS + ("parallel",)  # a load response's config is a request
    for key, value in raw.items():
        if key not in names:
            canonical = LoadModelConfig.canonical_key(key)
            if canonical is not None:
                raise bad_request(f"unknown field '{param}.{key}' — the REST API takes snake_case: use "
                                  f"'{canonical}'", param=f"{param}.{key}")
            hint = suggest(key, list(names), {})
            raise bad_request(f"unknown field '{param}.{key}': not a load setting{hint}", param=f"{param}.{key}")
        if key == "gpu" and isinstance(value, dict):
            gpu_names = GpuSetting.field_names("snake") + REPORTED_LAYER_KEYS
            for sub in value:
                if sub not in gpu_names:
                    hint = suggest(str(sub), list(gpu_names), {})
                    raise bad_request(f"unknown field '{param}.gpu.{sub}'{hint}", param=f"{param}.gpu.{sub}")
    try:
        config = LoadModelConfig.parse(raw)
        if check is not None:
            check(config)
        return config
    except ConfigError as exc:
        key = f"{param}.{exc.key}" if exc.key else param
        if exc.allowed and exc.key:
            raise bad_request(f"{key}={short(exc.value)}: must be {exc.allowed}", param=key) from None
        raise bad_request(str(exc), param=key) from None


def prediction_config(values: Mapping[str, Any], renames: Mapping[str, str] | None = None,
                      check: Callable[[PredictionConfig], None] | None = None) -> PredictionConfig:
    """The PredictionConfig for request fields ``values`` (None = unset); 400 naming the request field.
    ``check`` (the engine's ``check_prediction_config``) refuses what the engine cannot take.

    ``renames`` maps request field names to PredictionConfig keys (``max_output_tokens`` → ``max_tokens``).
    """
    renames = dict(renames or {})
    back = {v: k for k, v in renames.items()}
    data = {renames.get(k, k): v for k, v in values.items() if v is not None}
    try:
        config = PredictionConfig.parse(data)
        if check is not None:
            check(config)  # here, so that the 400 names the request's field
        return config
    except ConfigError as exc:
        key = exc.key or ""
        head, dot, rest = key.partition(".")
        field = back.get(head, head)
        param = field + dot + rest if key else None
        if exc.allowed and key:
            allowed = re.sub(r", or False .*$", "", exc.allowed)  # REST bodies cannot send the Python API's False
            raise bad_request(f"{param}={short(exc.value)}: must be {allowed}", param=param) from None
        raise bad_request(str(exc), param=param) from None


def unsupported(param: str, value: Any, allowed: tuple[Any, ...], what: str) -> None:
    """400 if ``value`` is set to something other than ``allowed``: lmsext does not implement ``what``."""
    if value is not None and value not in allowed:
        raise bad_request(f"{param}={short(value)}: {what} is not supported by lmsext", param=param)

