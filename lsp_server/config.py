"""Server options: one dataclass with the defaults in one place.

On the wire (initializationOptions, workspace/didChangeConfiguration) the options are camelCase
(`maxNewTokensSingleLine`); in code they are snake_case. `parse_config` never raises: an invalid
value produces a warning that names the option and the default used instead.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from inference.api import BACKENDS, FIM_FORMAT_NAMES

LOG_LEVELS = ("error", "warning", "info", "debug", "trace")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")  # int8: 8-bit linear weights, CPU (inference.quantize)
PREFILL_DTYPES = ("auto", "model")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SETTINGS_SECTIONS = ("infill", "infillLs", "infill-ls")


@dataclass(frozen=True)
class Config:
    model: str | None = None  # folder or hub id; None: the shipped default model
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"
    prefill_dtype: str = "auto"  # auto: bf16 autocast for long prefills of an fp32 model on a CPU with bf16
    max_new_tokens_single_line: int = 32
    max_new_tokens_multi_line: int = 96
    temperature: float = 0.0  # 0: greedy
    top_p: float = 0.95
    num_candidates: int = 3  # for an Invoked request (explicit gesture)
    debounce_ms: int = 0
    rate_limit: float = 20.0  # model requests started per second, at most
    context_tokens: int = 0  # prompt + generation budget; 0: the model's limit
    suffix_fraction: float = 0.25  # share of the prompt budget given to the text after the cursor
    kv_budget_mb: int = 256
    request_timeout_ms: int = 5000  # bound on one generation (and on the wait for it)
    prefetch: bool = True  # infill/prefetch notifications (the cursor came to rest) warm that place
    languages: tuple[str, ...] = field(default=("*",))  # languageIds enabled; "*": all
    log_level: str = "info"
    log_file: str | None = None
    backend: str = "local"  # local: the in-process engine; vllm, llama.cpp, openai: a server at `endpoint`
    endpoint: str = "http://127.0.0.1:8080"  # a remote backend's base URL
    served_model: str | None = None  # the model name the server knows; None: the first it lists
    api_key_env: str | None = None  # the name of the environment variable holding the server's API key
    ca_bundle: str | None = None  # a PEM file of CAs for https (a corporate CA); None: the system's
    fim_format: str = "auto"  # auto: from the model's family and tokenizer; else one of FIM_FORMAT_NAMES

    def model_key(self) -> tuple:
        """What a loaded model depends on: a change here reloads it."""
        return (self.model, self.device, self.dtype, self.prefill_dtype, self.kv_budget_mb, self.fim_format,
                *self.engine_key())

    def engine_key(self) -> tuple:
        """Which engine runs the model: ("local",) or what reaches the server."""
        if self.backend == "local":
            return ("local",)
        return (self.backend, self.endpoint, self.served_model, self.api_key_env, self.ca_bundle)

    def max_new_tokens(self, multi_line: bool) -> int:
        """The token limit of a suggestion (see CursorContext.multi_line)."""
        return self.max_new_tokens_multi_line if multi_line else self.max_new_tokens_single_line

    def language_enabled(self, language_id: str | None) -> bool:
        return "*" in self.languages or (language_id or "") in self.languages


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


FIELD_BY_WIRE_NAME = {camel(f.name): f.name for f in dataclasses.fields(Config)}


def _int_in(lo: int, hi: int):
    def check(v: Any):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            return None, f"must be a whole number between {lo} and {hi}"
        v = int(v)
        return (v, None) if lo <= v <= hi else (None, f"must be between {lo} and {hi}")

    return check


def _float_in(lo: float, hi: float, lo_open: bool = False):
    def check(v: Any):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None, f"must be a number between {lo} and {hi}"
        ok = (lo < v if lo_open else lo <= v) and v <= hi
        return (float(v), None) if ok else (None, f"must be between {lo} and {hi}")

    return check


def _choice(*choices: str):
    def check(v: Any):
        if isinstance(v, str) and v.lower() in choices:
            return v.lower(), None
        return None, "must be one of " + ", ".join(repr(c) for c in choices)

    return check


def _bool(v: Any):
    if isinstance(v, bool):
        return v, None
    return None, "must be true or false"


def _optional_str(v: Any):
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return None, None
    if isinstance(v, str):
        return v, None
    return None, "must be a string"


def _endpoint(v: Any):
    from urllib.parse import urlsplit

    if isinstance(v, str):
        try:
            url = urlsplit(v.strip())
            ok = url.scheme in ("http", "https") and bool(url.hostname) and (url.port or 1) > 0
        except ValueError:
            ok = False
        if ok:
            return v.strip().rstrip("/"), None
    return None, "must be an http:// or https:// URL with a host (e.g. http://127.0.0.1:8080)"


def _env_name(v: Any):
    import re

    if v is None or v == "":
        return None, None
    if isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", v):
        return v, None
    return None, ("must be the NAME of an environment variable holding the key (e.g. INFILL_API_KEY), "
                  "never the key itself")


def clear_text_warning(config: "Config") -> str | None:
    """A remote backend over plain http to a host that is not this machine sends the user's code in clear."""
    from urllib.parse import urlsplit

    if config.backend == "local":
        return None
    url = urlsplit(config.endpoint)
    if url.scheme == "http" and (url.hostname or "") not in LOOPBACK_HOSTS:
        return (f"infill-ls: the endpoint {config.endpoint} is plain http to another machine: your code "
                "crosses the network in clear (use https)")
    return None


def _languages(v: Any):
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) and x for x in v):
        return tuple(v), None
    return None, 'must be a non-empty list of language ids (["*"] for all)'


VALIDATORS = {
    "model": _optional_str,
    "device": _choice(*DEVICES),
    "dtype": _choice(*DTYPES),
    "prefill_dtype": _choice(*PREFILL_DTYPES),
    "max_new_tokens_single_line": _int_in(1, 1024),
    "max_new_tokens_multi_line": _int_in(1, 1024),
    "temperature": _float_in(0.0, 2.0),
    "top_p": _float_in(0.0, 1.0, lo_open=True),
    "num_candidates": _int_in(1, 10),
    "debounce_ms": _int_in(0, 5000),
    "rate_limit": _float_in(0.0, 1000.0, lo_open=True),
    "context_tokens": _int_in(0, 1 << 20),
    "suffix_fraction": _float_in(0.0, 0.9),
    "kv_budget_mb": _int_in(1, 1 << 20),
    "request_timeout_ms": _int_in(50, 600_000),
    "prefetch": _bool,
    "languages": _languages,
    "log_level": _choice(*LOG_LEVELS),
    "log_file": _optional_str,
    "backend": _choice(*BACKENDS),
    "endpoint": _endpoint,
    "served_model": _optional_str,
    "api_key_env": _env_name,
    "ca_bundle": _optional_str,
    "fim_format": _choice("auto", *FIM_FORMAT_NAMES),
}
SECRET_OPTIONS = ("api_key_env",)  # a wrong value may be a pasted key: never echoed

DEFAULTS = Config()


def settings_section(settings: Any) -> dict | None:
    """The infill-ls options inside client settings: either the whole object or its `infill` key."""
    if not isinstance(settings, dict):
        return None
    for key in SETTINGS_SECTIONS:
        if isinstance(settings.get(key), dict):
            return settings[key]
    return settings


def parse_config(raw: Any, base: Config = DEFAULTS) -> tuple[Config, list[str], list[str]]:
    """Apply the options in `raw` over `base`.

    Returns (config, warnings, ignored): warnings name each invalid option and the default used;
    ignored lists unknown option names (not an error: clients send other servers' settings too).
    """
    section = settings_section(raw)
    if section is None:
        if raw is None:
            return base, [], []
        return base, [f"infill-ls: options must be a JSON object, got {type(raw).__name__}; ignored"], []
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    ignored: list[str] = []
    for wire_name, value in section.items():
        name = FIELD_BY_WIRE_NAME.get(wire_name) or (wire_name if wire_name in VALIDATORS else None)
        if name is None:
            ignored.append(str(wire_name))
            continue
        default = getattr(DEFAULTS, name)
        if value is None:
            changes[name] = default
            continue
        parsed, problem = VALIDATORS[name](value)
        if problem is None:
            changes[name] = parsed
        else:
            shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
            if name in SECRET_OPTIONS:
                shown = "(not shown)"
            warnings.append(
                f"infill-ls: invalid value {shown} for option '{camel(name)}': {problem}; "
                f"using the default {_show(default)}"
            )
            changes[name] = default
    config = dataclasses.replace(base, **changes)
    clear = clear_text_warning(config)
    if clear and ("backend" in changes or "endpoint" in changes):
        warnings.append(clear)
    return config, warnings, ignored


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(v) for v in value) + "]"
    return repr(value)


def to_wire(config: Config) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(Config):
        v = getattr(config, f.name)
        out[camel(f.name)] = list(v) if isinstance(v, tuple) else v
    return out
