"""Parameters a merge method declares, and mergekit's rules for resolving their settings.

A method lists its parameters the way mergekit's `ParameterSpec`s do: a name, a type, a
scope (one value for the whole merge, one per input, or one per input other than the
base), a default, and for searchable numbers the range a search may draw from. A
setting is a scalar, a gradient (a list interpolated over the layers of a slice), or a
list of `{filter, value}` conditions matched against the tensor name; `evaluate_setting`
resolves one for a tensor exactly as mergekit 0.1.5's `mergekit.config.evaluate_setting`
does, so a config means the same thing here and there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from merger.errors import MethodError

MISSING = object()


class Scope(str, Enum):
    SHARED = "shared"  # one value for the merge (mergekit: the config's or a slice's parameters)
    INPUT = "input"  # one per input checkpoint
    NON_BASE = "non_base"  # one per input other than the base model


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type  # float or bool
    scope: Scope
    default: Any = MISSING
    # Searchable numbers: the range a search may draw the value from (None: not searchable).
    search_range: tuple[float, float] | None = None
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def per_input(self) -> bool:
        return self.scope is not Scope.SHARED

    def validate(self, value: Any, where: str = "") -> Any:
        """The value in this parameter's type, or a MethodError naming it (pydantic's lax rules:
        numeric strings for numbers, true/false/yes/no/0/1 for booleans)."""
        label = f"parameter {self.name!r}{where}"
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.strip().lower()]
            raise MethodError(f"{label} must be true or false, got {value!r}")
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise MethodError(f"{label} must be a number, got {value!r}")


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False,
               "1": True, "0": False, "t": True, "f": False, "y": True, "n": False}


def is_condition(setting: Any) -> bool:
    return isinstance(setting, dict) and "value" in setting and set(setting) <= {"value", "filter"}


def evaluate_setting(parameter: Parameter, tensor_name: str, setting: Any, t: float = 0.0, where: str = "") -> Any:
    """A setting's value for one tensor at layer position t in [0, 1] (None: no condition matched).

    Numeric gradients interpolate linearly between neighbouring entries; booleans pick
    the entry at int(t * (len - 1)); conditions apply the first whose filter is absent,
    "*", or a substring of the tensor name (mergekit's rules, order included)."""
    if is_condition(setting):
        setting = [setting]
    if isinstance(setting, (bool, int, float, str)):
        return parameter.validate(setting, where)
    if not isinstance(setting, list):
        raise MethodError(f"parameter {parameter.name!r}{where}: unexpected setting {setting!r}")
    if not setting:
        return None
    if all(isinstance(e, (bool, int, float, str)) for e in setting):
        values = [parameter.validate(e, where) for e in setting]
        if not all(isinstance(v, float) for v in values):
            return values[int(t * (len(values) - 1))]
        scaled = t * (len(values) - 1)
        i0 = int(scaled)
        i1 = min(len(values) - 1, i0 + 1)
        frac = scaled - i0
        return parameter.validate((1 - frac) * values[i0] + frac * values[i1], where)
    for condition in setting:
        if not is_condition(condition):
            raise MethodError(
                f"parameter {parameter.name!r}{where}: a list mixing numbers and conditions, or a condition "
                f"with fields other than filter and value: {condition!r}"
            )
        pattern = condition.get("filter")
        if pattern is None or pattern == "*" or (tensor_name and str(pattern) in tensor_name):
            return evaluate_setting(parameter, tensor_name, condition["value"], t, where)
    return None


def resolve(parameter: Parameter, scopes: list[dict | None], tensor_name: str, t: float, where: str = "") -> Any:
    """The first scope (highest precedence first) whose setting yields a value, else the default."""
    for scope in scopes:
        if scope is not None and parameter.name in scope:
            value = evaluate_setting(parameter, tensor_name, scope[parameter.name], t, where)
            if value is not None:
                return value
    if parameter.required:
        raise MethodError(f"missing required parameter {parameter.name!r}{where} for tensor {tensor_name!r}")
    return parameter.default
