"""Device profiles: per-LLM latency, energy and accuracy per category on one kind of hardware.

A value block is a number or a mapping of category to number, and says where it comes from.
Latency and energy may instead be derived from throughput and power with the category's
typical prompt and answer lengths: latency = prompt/prefill + output/decode, energy = power x
latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node

from moe2_cli.problem import MAX_ENERGY_J, MAX_LATENCY_S
from moe2_cli.yamlio import Checker, did_you_mean, read_yaml

SCHEMA_VERSION = 1
_BLOCK_META = ("source", "derived", "metric", "notes")
_LLM_KEYS = ("params_b", "quantization", "throughput", "latency_s", "energy_j", "accuracy", "source", "notes")


@dataclass(frozen=True)
class LLMProfile:
    """One LLM measured on one device: per-category latency (s), energy (J) and accuracy."""

    name: str
    latency_s: dict[str, float]
    energy_j: dict[str, float]
    accuracy: dict[str, float]
    params_b: float | None = None
    quantization: str | None = None
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    name: str
    path: str
    categories: tuple[str, ...]
    llms: dict[str, LLMProfile]


def load_profile(path: str | Path, display: str | None = None, root: Node | None = None) -> DeviceProfile:
    """Read and validate a profile; raise InputError listing every problem in the file.
    ``root`` is the file's node tree when the caller has already parsed it."""
    display = display or str(path)
    root = root if root is not None else read_yaml(path, display)
    check = Checker(display)
    top = check.mapping(root, "profile", required=("schema_version", "device", "categories", "llms"))
    if top is None:
        check.raise_if_any()
    check_schema_version(check, top)
    device = _device(check, top["device"][1]) if "device" in top else None
    shapes = _categories(check, top["categories"][1]) if "categories" in top else {}
    llms = _llms(check, top["llms"][1], shapes) if "llms" in top else {}
    check.raise_if_any()
    return DeviceProfile(id=device[0], name=device[1], path=display, categories=tuple(shapes), llms=llms)  # type: ignore[index]


def check_schema_version(check: Checker, top: dict) -> None:
    """Profiles and scenarios share one schema version; report any other."""
    if "schema_version" not in top:
        return
    node = top["schema_version"][1]
    version = check.number(node, "schema_version", integer=True)
    if version is not None and version != SCHEMA_VERSION:
        check.error(node, f"schema_version must be {SCHEMA_VERSION} (got {version})")


def _device(check: Checker, node) -> tuple[str, str] | None:
    fields = check.mapping(node, "device", required=("id", "name", "source"), optional=("notes",))
    if fields is None:
        return None
    values = {k: check.string(v, f"device.{k}") for k, (_, v) in fields.items()}
    return values.get("id") or "?", values.get("name") or "?"


def _categories(check: Checker, node) -> dict[str, tuple[float, float]]:
    """Category -> (prompt tokens, output tokens)."""
    entries = check.mapping(node, "categories", free_keys=True)
    if entries is None:
        return {}
    if not entries:
        check.error(node, "categories must name at least one category (got none)")
    shapes = {}
    for name, (_, value) in entries.items():
        fields = check.mapping(value, f"category {name!r}", required=("prompt_tokens", "output_tokens"),
                               optional=("notes", "source"))
        if fields is None:
            continue
        prompt = check.number(fields["prompt_tokens"][1], f"{name}.prompt_tokens", non_negative=True) \
            if "prompt_tokens" in fields else None
        output = check.number(fields["output_tokens"][1], f"{name}.output_tokens", positive=True) \
            if "output_tokens" in fields else None
        if prompt is not None and output is not None:
            shapes[name] = (prompt, output)
    return shapes


def _llms(check: Checker, node, shapes) -> dict[str, LLMProfile]:
    entries = check.mapping(node, "llms", free_keys=True)
    if entries is None:
        return {}
    if not entries:
        check.error(node, "llms must list at least one LLM (got none)")
    out = {}
    for name, (_, value) in entries.items():
        llm = _llm(check, name, value, shapes)
        if llm is not None:
            out[name] = llm
    return out


def _llm(check: Checker, name: str, node, shapes) -> LLMProfile | None:
    fields = check.mapping(node, f"llm {name!r}", required=("accuracy",), optional=_LLM_KEYS)
    if fields is None:
        return None
    before = len(check.diagnostics)
    own_source = check.string(fields["source"][1], f"{name}.source") if "source" in fields else None
    accuracy = _per_category(check, fields, "accuracy", name, shapes, own_source, unit_interval=True)
    if "throughput" in fields:
        for key in ("latency_s", "energy_j"):
            if key in fields:
                check.error(fields[key][0], f"{name}: give either throughput or {key}, not both")
        latency, energy = _from_throughput(check, fields["throughput"][1], name, shapes)
    else:
        for key in ("latency_s", "energy_j"):
            if key not in fields:
                check.error(node, f"llm {name!r} needs throughput, or both latency_s and energy_j (missing {key})")
        latency = _per_category(check, fields, "latency_s", name, shapes, own_source, positive=True,
                                maximum=MAX_LATENCY_S)
        energy = _per_category(check, fields, "energy_j", name, shapes, own_source, positive=True,
                               maximum=MAX_ENERGY_J)
    params = check.number(fields["params_b"][1], f"{name}.params_b", positive=True) if "params_b" in fields else None
    quant = check.string(fields["quantization"][1], f"{name}.quantization") if "quantization" in fields else None
    if len(check.diagnostics) > before or not (accuracy and latency and energy):
        return None
    return LLMProfile(name=name, latency_s=latency, energy_j=energy, accuracy=accuracy,
                      params_b=params, quantization=quant)


def _per_category(check, fields, key, llm, shapes, own_source, **bounds) -> dict[str, float] | None:
    """A value block: one number for every category, or a mapping covering every category."""
    if key not in fields:
        return None
    node = fields[key][1]
    what = f"{llm}.{key}"
    if node.id == "scalar":
        if own_source is None:
            check.error(node, f"{what} is a bare number, so llm {llm!r} needs a source key")
        value = check.number(node, what, **bounds)
        return None if value is None else {c: value for c in shapes}
    entries = check.mapping(node, what, free_keys=True)
    if entries is None:
        return None
    values = {}
    for cat, (key_node, value_node) in entries.items():
        if cat in _BLOCK_META:
            check.string(value_node, f"{what}.{cat}")
        elif cat not in shapes:
            check.error(key_node, f"unknown category {cat!r} in {what}{did_you_mean(cat, shapes)}")
        else:
            number = check.number(value_node, f"{what}.{cat}", **bounds)
            if number is not None:
                values[cat] = number
    if "source" not in entries and own_source is None:
        check.error(node, f"{what} needs a source key saying where the numbers come from")
    missing = [c for c in shapes if c not in entries]
    if missing:
        check.error(node, f"{what} is missing categories: {', '.join(missing)}")
    return values if len(values) == len(shapes) else None


def _from_throughput(check, node, llm, shapes):
    keys = ("prefill_tok_s", "decode_tok_s", "power_w")
    fields = check.mapping(node, f"{llm}.throughput", required=keys + ("source",), optional=("derived", "notes"))
    if fields is None:
        return None, None
    for meta in ("source", "derived", "notes"):
        if meta in fields:
            check.string(fields[meta][1], f"{llm}.throughput.{meta}")
    rates = {k: check.number(fields[k][1], f"{llm}.throughput.{k}", positive=True) for k in keys if k in fields}
    if len(rates) < len(keys) or None in rates.values() or not shapes:
        return None, None
    latency = {c: p / rates["prefill_tok_s"] + o / rates["decode_tok_s"] for c, (p, o) in shapes.items()}
    energy = {c: rates["power_w"] * t for c, t in latency.items()}
    for what, values, maximum in (("latency", latency, MAX_LATENCY_S), ("energy", energy, MAX_ENERGY_J)):
        worst = max(values.values())
        if not worst <= maximum:
            check.error(node, f"{llm}.throughput gives a {what} above {maximum:g} (got {worst:g})")
            return None, None
    return latency, energy

