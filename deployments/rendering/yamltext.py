"""YAML text for the manifest templates: every scalar quoted so that it reads back as the value it was.

Templates emit YAML as text, so a value such as ``yes``, ``0123``, ``1e3`` or ``a: b`` would change type or break
the document if it were written as it is. ``yaml_scalar`` writes a plain scalar only when the text reads back as
the same string under both YAML 1.1 (PyYAML, Argo CD's older parsers) and YAML 1.2 (go-yaml in kustomize, Flux);
everything else is double-quoted with YAML escapes. It does per value what ``yaml.safe_dump`` of one scalar does,
about a hundred times faster, which matters at 5,000 projects × dozens of values.
"""

import marshal
import math
import re
from functools import lru_cache

# Plain only when it starts with a letter, '_' or '/' and holds no indicator or space: no YAML 1.1/1.2 number,
# timestamp, alias, tag, comment or mapping can start that way.
_PLAIN = re.compile(r"(?:[A-Za-z_/]|\.\.?/)[-A-Za-z0-9._/:]*\Z")
# Words that YAML 1.1 resolves to booleans or null (any case; go-yaml also quotes these when it writes).
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
# Characters a double-quoted scalar must not hold as they are: C0/C1 controls, DEL, the Unicode line and
# paragraph separators and NEL (line breaks in YAML 1.1), the BOM, surrogates and the two non-characters.
_ESCAPE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]")
_NAMED_ESCAPES = {"\0": "\\0", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x85": "\\N", "\u2028": "\\L",
                  "\u2029": "\\P"}


class YamlText(str):
    """Text that is already YAML: the templates' finalize step passes it through instead of quoting it again."""

    __slots__ = ()


def _escape_char(match: re.Match) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _double_quoted(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if _ESCAPE.search(text):
        text = _ESCAPE.sub(_escape_char, text)
    return f'"{text}"'


@lru_cache(maxsize=65536)
def _string_scalar(value: str) -> str:
    if _PLAIN.match(value) and value.lower() not in _RESERVED and not value.endswith(":"):
        return value
    return _double_quoted(value)


def yaml_scalar(value) -> str:
    """One YAML scalar for ``value`` (str, bool, int, float or None) that reads back as the same value."""
    if type(value) is str:
        return _string_scalar(value)
    if isinstance(value, str):
        return _string_scalar(str(value))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 floats need a dot and a signed exponent (1e-05 is a string there, 1.0e-05 is not).
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    raise TypeError(f"yaml_scalar takes str, bool, int, float or None, not {type(value).__name__}")


# Blocks already written, by (marshal bytes of the value, indent): most blocks of a tree repeat from project to
# project (probes, resources, tolerations, NetworkPolicy rules). marshal writes only exact built-in types, in
# order and with their type (1, 1.0, True and "1" differ; so do a list and a tuple), and its bytes read back as
# the value, so equal keys mean equal output. Emptied when full.
_BLOCKS: dict[tuple[bytes, int], YamlText] = {}
_BLOCKS_MAX = 4096


def yaml_block(value, indent: int = 0) -> YamlText:
    """A dict or list/tuple as block YAML, every line indented by ``indent`` spaces (no trailing newline).

    Mappings keep their order (callers sort where order carries no meaning); empty collections are written
    ``{}`` / ``[]``. Sequences sit at the indentation of their parent key, as kubectl and kustomize write them.
    """
    try:
        key = (marshal.dumps(value, 2), indent)
    except ValueError:  # a type marshal does not write exactly (a subclass, an object): not remembered
        key = None
    else:
        text = _BLOCKS.get(key)
        if text is not None:
            return text
    lines: list[str] = []
    _emit(value, indent, lines)
    text = YamlText("\n".join(lines))
    if key is not None:
        if len(_BLOCKS) >= _BLOCKS_MAX:
            _BLOCKS.clear()
        _BLOCKS[key] = text
    return text


def yaml_flow(value) -> YamlText:
    """A small value on one line: a scalar, or a flow sequence / mapping of scalars (``[a, b]``, ``{k: v}``)."""
    if isinstance(value, dict):
        return YamlText("{" + ", ".join(f"{_key(k)}: {_flow_item(v)}" for k, v in value.items()) + "}")
    if isinstance(value, (list, tuple)):
        return YamlText("[" + ", ".join(_flow_item(v) for v in value) + "]")
    return YamlText(yaml_scalar(value))


def _flow_item(value) -> str:
    if isinstance(value, (dict, list, tuple)):
        return yaml_flow(value)
    text = yaml_scalar(value)
    # ':' inside a plain scalar is fine in block context but ambiguous inside [..] / {..}.
    return _double_quoted(value) if isinstance(value, str) and ":" in text and not text.startswith('"') else text


def _key(key) -> str:
    if type(key) is not str:
        raise TypeError(f"mapping keys must be strings, not {type(key).__name__}")
    return _string_scalar(key)


def _emit(value, indent: int, lines: list[str]) -> None:
    # Hot path (millions of calls for a large tree): dispatch on exact types, strings first.
    pad = " " * indent
    kind = type(value)
    if kind is dict:
        if not value:
            lines.append(pad + "{}")
            return
        for key, item in value.items():
            head = pad + _key(key) + ":"
            item_kind = type(item)
            if item_kind is str:
                lines.append(head + " " + _string_scalar(item))
            elif item_kind is dict and item:
                lines.append(head)
                _emit(item, indent + 2, lines)
            elif (item_kind is list or item_kind is tuple) and item:
                lines.append(head)
                _emit(item, indent, lines)
            else:
                lines.append(head + " " + _inline(item))
    elif kind is list or kind is tuple:
        if not value:
            lines.append(pad + "[]")
            return
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                lines.append(pad + "- " + _string_scalar(item))
            elif item_kind is dict and item:
                # The first entry shares the line with the dash; the rest align under it.
                start = len(lines)
                _emit(item, indent + 2, lines)
                lines[start] = pad + "- " + lines[start][indent + 2:]
            elif (item_kind is list or item_kind is tuple) and item:
                lines.append(pad + "-")
                _emit(item, indent + 2, lines)
            else:
                lines.append(pad + "- " + _inline(item))
    elif isinstance(value, (dict, list, tuple)):
        # Subclasses (OrderedDict, ...): same output as their base type.
        _emit(dict(value) if isinstance(value, dict) else list(value), indent, lines)
    else:
        lines.append(pad + yaml_scalar(value))


def _inline(value) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return yaml_scalar(value)
