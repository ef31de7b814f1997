"""Params profiles: the named configurations beside the CPU default (``configs/<name>.yaml``).

A profile is an overlay of ``params.yaml``: the keys it changes, nested as there; a mapping merges key by
key, any other value (a number, a list) replaces the default's. It reaches DVC in one of two ways, both
tracked as DVC tracks params:

- ``taskonomy profile gpu-128 --apply`` edits ``params.yaml`` in place, comments kept (a round trip, as
  ``dvc exp run --set-param`` does it), to commit or to run with ``dvc repro``;
- ``dvc exp run $(taskonomy profile gpu-128 --set-args)`` runs it as an experiment, the file untouched.

``taskonomy check-params params.yaml --profile gpu-128`` validates the merge without writing anything
(CI checks every committed profile so).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from taskonomy.errors import ParamsError
from taskonomy.storage import atomic_write_text

PROFILES = Path(__file__).resolve().parents[1] / "configs"


def profile_path(name: str | Path) -> Path:
    """A profile's file: a path as given, or a name of ``configs/`` (``gpu-128``)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        return path
    return PROFILES / f"{name}.yaml"


def load_profile(name: str | Path) -> dict[str, Any]:
    """A profile's overlay; a missing or malformed file is one line naming it."""
    path = profile_path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml"))) or "none"
        raise ParamsError(f"{path}: no such profile (known in configs/: {known})")
    try:
        overlay = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ParamsError(f"{path}: not valid YAML" + (f" (line {mark.line + 1})" if mark else "")) from None
    if not isinstance(overlay, dict) or not overlay:
        raise ParamsError(f"{path}: a profile is a mapping of the params it changes")
    return overlay


def merge(base: Any, overlay: Any) -> Any:
    """``base`` with ``overlay`` on top: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge(base.get(key), value)
        return merged
    return overlay


def leaves(overlay: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The overlay's (dotted key, value) pairs, mappings descended into."""
    out: list[tuple[str, Any]] = []
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(leaves(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out


def set_args(overlay: dict[str, Any]) -> list[str]:
    """``dvc exp run`` arguments setting every leaf: ``-S key=value`` (values as JSON, which DVC's
    override grammar reads for numbers, strings, lists and mappings alike)."""
    def text(value: Any) -> str:
        if isinstance(value, str) and value.replace("_", "").replace("-", "").isalnum():
            return value                                   # a plain word needs no quotes
        return json.dumps(value, separators=(",", ":"))

    return [arg for key, value in leaves(overlay) for arg in ("-S", f"{key}={text(value)}")]


def apply_profile(params: Path, overlay: dict[str, Any]) -> list[str]:
    """Write ``overlay`` into the params file in place, keeping its comments and order; returns the keys
    whose value changed."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    doc = rt.load(Path(params).read_text(encoding="utf-8"))
    changed: list[str] = []

    def put(node: Any, key: str, value: Any, dotted: str) -> None:
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            for k, v in value.items():
                put(node[key], k, v, f"{dotted}.{k}")
        elif node.get(key) != value:
            node[key] = value
            changed.append(dotted)

    for key, value in overlay.items():
        put(doc, key, value, key)
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    atomic_write_text(params, buffer.getvalue())
    return changed
