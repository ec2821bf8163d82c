"""Where a server's LLMs answer: an OpenAI-compatible base URL, the served model ids, and how the
server's power is read. One model shared by ``moe2 measure`` and ``moe2 serve``.

In a scenario::

    servers:
      - name: orin-1
        profile: jetson-agx-orin-64gb
        llms: [qwen2.5-7b-instruct]
        endpoint:
          url: http://127.0.0.1:8080        # llama-server, vLLM, Ollama, MLC, TensorRT-LLM
          api_key_env: ORIN1_KEY            # optional: the variable's name, never the key
          models: {qwen2.5-7b-instruct: qwen2.5:7b}   # optional: defaults to the LLM's name
          power: tegrastats                 # nvml[:GPU], tegrastats, rapl, file:PATH or none
          watts: 30                         # with power: none, energy is derived as W x time
          timeout_s: 120                    # optional, per request
          stream_upstream: true             # optional: whole replies asked for as streams
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from moe2_cli.yamlio import Checker

POWER_KINDS = ("nvml", "tegrastats", "rapl", "file", "none")
DEFAULT_TIMEOUT_S = 120.0
_KEYS = ("url", "api_key_env", "models", "power", "watts", "timeout_s", "tegrastats_interval_ms", "stream_upstream")


@dataclass(frozen=True)
class PowerSource:
    """How energy per request is obtained. ``derived`` is True when it is watts x time."""

    kind: str  # one of POWER_KINDS
    gpu_index: int = 0  # nvml
    path: Path | None = None  # file: a power-meter log of timestamps and watts
    watts: float | None = None  # none: the stated constant draw
    interval_ms: int = 100  # tegrastats sampling interval

    @property
    def derived(self) -> bool:
        return self.kind == "none"

    def describe(self) -> str:
        if self.kind == "nvml":
            return f"nvml:{self.gpu_index}"
        if self.kind == "file":
            return f"file:{self.path}"
        if self.kind == "none":
            return f"none ({self.watts:g} W x time, derived)"
        return self.kind


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server that hosts one scenario server's LLMs."""

    server: str
    url: str  # base URL, without a trailing slash; requests go to url + "/v1/..."
    models: dict[str, str] = field(default_factory=dict)  # LLM name -> served model id
    power: PowerSource | None = None  # None: not stated; `measure` needs it, `serve` does not
    api_key_env: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    # `serve` asks for a stream even for a whole reply and rebuilds it from the chunks: a server
    # that notices its client gone only between chunks (llama-cpp-python's) then stops when a
    # deadline closes the call, instead of computing the whole reply for nobody.
    stream_upstream: bool = False

    def model_id(self, llm: str) -> str:
        return self.models.get(llm, llm)

    @property
    def api_base(self) -> str:
        """The URL that OpenAI clients take as ``base_url``: the server's ``/v1``."""
        return self.url if self.url.endswith("/v1") else self.url + "/v1"


def parse_endpoint(check: Checker, node, server: str, llms: list[str], scenario_path: Path) -> Endpoint | None:
    """Validate one ``endpoint`` block; every problem is reported at its place."""
    fields = check.mapping(node, f"{server}.endpoint", required=("url",), optional=_KEYS)
    if fields is None:
        return None
    url = _url(check, fields["url"][1], server) if "url" in fields else None
    models = _models(check, fields["models"][1], server, llms) if "models" in fields else {}
    key_env = _env_name(check, fields["api_key_env"][1], server) if "api_key_env" in fields else None
    timeout = check.number(fields["timeout_s"][1], f"{server}.endpoint.timeout_s", positive=True) \
        if "timeout_s" in fields else DEFAULT_TIMEOUT_S
    stream = check.flag(fields["stream_upstream"][1], f"{server}.endpoint.stream_upstream") \
        if "stream_upstream" in fields else False
    power = _power(check, fields, server, scenario_path)
    if url is None or timeout is None or stream is None or (power is None and ("power" in fields or "watts" in fields)):
        return None
    return Endpoint(server=server, url=url, models=models, power=power, api_key_env=key_env, timeout_s=float(timeout),
                    stream_upstream=stream)


def _url(check: Checker, node, server: str) -> str | None:
    text = check.string(node, f"{server}.endpoint.url")
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        check.error(node, f"{server}.endpoint.url must be an http:// or https:// URL (got {text!r})")
        return None
    return text.rstrip("/")


def _models(check: Checker, node, server: str, llms: list[str]) -> dict[str, str]:
    entries = check.mapping(node, f"{server}.endpoint.models", free_keys=True) or {}
    out = {}
    for llm, (key_node, value) in entries.items():
        if llm not in llms:
            check.error(key_node, f"{server}.endpoint.models names {llm!r}, which {server!r} does not host "
                                  f"(it hosts: {', '.join(llms) or 'nothing'})")
            continue
        model_id = check.string(value, f"{server}.endpoint.models.{llm}")
        if model_id is not None:
            out[llm] = model_id
    return out


def _env_name(check: Checker, node, server: str) -> str | None:
    name = check.string(node, f"{server}.endpoint.api_key_env")
    if name is not None and not (name.replace("_", "a").isalnum() and not name[0].isdigit()):
        # The value is not echoed: a key pasted here by mistake must not reach a log.
        check.error(node, f"{server}.endpoint.api_key_env must be the name of an environment variable "
                          f"(letters, digits, underscores), not the key itself")
        return None
    return name


def _power(check: Checker, fields, server: str, scenario_path: Path) -> PowerSource | None:
    what = f"{server}.endpoint.power"
    if "power" not in fields and "watts" not in fields:
        return None
    node = fields["power"][1] if "power" in fields else None
    spec = check.string(node, what) if node is not None else "none"
    watts = check.number(fields["watts"][1], f"{server}.endpoint.watts", non_negative=True) \
        if "watts" in fields else None
    interval = check.number(fields["tegrastats_interval_ms"][1], f"{server}.endpoint.tegrastats_interval_ms",
                            positive=True, integer=True) if "tegrastats_interval_ms" in fields else 100
    if spec is None or interval is None:
        return None
    kind, _, arg = spec.partition(":")
    if kind not in POWER_KINDS:
        check.error(node, f"{what} must be one of nvml[:GPU_INDEX], tegrastats, rapl, file:PATH, none "
                          f"(got {spec!r})")
        return None
    if kind == "rapl":
        if arg:
            check.error(node, f"{what}: rapl takes no argument: it reads every CPU package (got {spec!r})")
            return None
        return PowerSource(kind="rapl")
    if kind == "nvml":
        if arg and not arg.isdigit():
            check.error(node, f"{what}: the GPU index after 'nvml:' must be a non-negative integer (got {arg!r})")
            return None
        return PowerSource(kind="nvml", gpu_index=int(arg or 0))
    if kind == "file":
        if not arg:
            check.error(node, f"{what}: 'file:' needs the power log's path (got {spec!r})")
            return None
        return PowerSource(kind="file", path=scenario_path.parent / arg)
    if kind == "none":
        if watts is None:
            check.error(node if node is not None else fields["url"][0],
                        f"{server}.endpoint needs 'watts' when power is none: energy is derived as watts x time")
            return None
        return PowerSource(kind="none", watts=float(watts))
    return PowerSource(kind="tegrastats", interval_ms=int(interval))
