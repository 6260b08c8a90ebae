"""The inverse of `print_graph(graph, full=True)`: IR text back to a Graph.

Grammar (whitespace, newlines and `// comments` are free between tokens):

    graph   := "graph" name "(" [value ":" type {"," value ":" type}] ")"
               "->" "(" [value {"," value}] ")" "{" {op} "}"
    op      := value "=" ["host"] kind [value {"," value}] ["{" attrs "}"] ":" type
    attrs   := ident "=" const {"," ident "=" const}
    const   := number | string | "(" [const {"," const}] ")" | "{" attrs "}" | array
    array   := dtype "[" shape "]" nested          (nested lists, or one scalar for shape [])
    type    := elem "[" shape "]"                  (f32, exact, bipolar, ternary, s8, u3, fixed<12,4>)
    value   := "%" (plain name | JSON string)      number: 3, -3, 3/4, 0.5, 1e-05, inf, nan

An op's attributes are its dataclass fields; each is checked against the field's annotation, the
op's own `result_type` checks the operands, and the written type and `host` marker must be the
ones the graph derives. Every error is a `ParseError` naming the line and column.
"""
from __future__ import annotations

import dataclasses
import json
import re
from fractions import Fraction

import numpy as np

from . import fixed_ops  # noqa: F401  (its ops register below with the others)
from .graph import Graph
from .ops import IRError, Op, Reuse
from .printer import DTYPES
from .types import Bipolar, Element, Exact, Fixed, Int, Real, TensorType, Ternary


class ParseError(ValueError):
    """IR text that does not parse; the message starts with the line and column."""

    def __init__(self, message: str, text: str, pos: int):
        self.line = text.count("\n", 0, pos) + 1
        start = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        self.column = pos - start + 1
        source = text[start:end if end >= 0 else len(text)]
        super().__init__(f"line {self.line}, column {self.column}: {message}\n    {source}\n    {' ' * (self.column - 1)}^")


_SPACE = re.compile(r"(?:\s+|//[^\n]*)*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VALUE = re.compile(r'%(?:([A-Za-z0-9_.]+)|("(?:[^"\\\n]|\\.)*"))')
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_NUM = r"-?(?:\d+/\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+|inf|nan)"
_NUMBER = re.compile(_NUM + r"(?![A-Za-z0-9_.])")
_NUMBERS = re.compile(rf"\s*(?:{_NUM}\s*(?:,\s*{_NUM}\s*)*)?")  # the inside of a row of numbers
_SHAPE = re.compile(r"(?:\d+(?:x\d+)*)?")
_ELEM = re.compile(r"(f32|exact|bipolar|ternary)|([su])(\d+)|fixed<(\d+),(\d+)>")
_ROW = re.compile(r"\[([^\[\]]*)\]")

_OP_KINDS: dict[str, type] = {}


def _register(cls):
    for sub in cls.__subclasses__():
        _OP_KINDS[sub.kind] = sub
        _register(sub)


_register(Op)


class _Scanner:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def error(self, message: str, pos: int | None = None) -> ParseError:
        return ParseError(message, self.text, self.pos if pos is None else pos)

    def skip(self) -> int:
        space = _SPACE.match(self.text, self.pos)
        assert space is not None  # _SPACE matches the empty string
        self.pos = space.end()
        return self.pos

    def found(self) -> str:
        self.skip()
        if self.pos >= len(self.text):
            return "the end of the text"
        word = re.match(r"[^\s,(){}\[\]]+|.", self.text[self.pos:])
        assert word is not None  # `.` matches the first character, which skip() left not a space
        return repr(word.group(0))

    def peek(self, literal: str) -> bool:
        self.skip()
        return self.text.startswith(literal, self.pos)

    def accept(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: str) -> int:
        start = self.skip()
        if not self.accept(literal):
            raise self.error(f"expected '{literal}', found {self.found()}")
        return start

    def match(self, pattern: re.Pattern[str], what: str, empty: bool = False) -> re.Match[str]:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m or (m.end() == self.pos and not empty):
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos = m.end()
        return m


def _string(sc: _Scanner, quoted: str, pos: int) -> str:
    try:
        return json.loads(quoted)
    except ValueError as exc:
        raise sc.error(f"not a valid JSON string: {exc}", pos) from None


def _value_name(sc: _Scanner) -> tuple[str, int]:
    m = sc.match(_VALUE, "a value (%name)")
    return (m.group(1) if m.group(1) is not None else _string(sc, m.group(2), m.start(2))), m.start()


def _shape(sc: _Scanner) -> tuple[int, ...]:
    sc.expect("[")
    text = sc.match(_SHAPE, "a shape", empty=True).group(0)
    sc.expect("]")
    return tuple(int(d) for d in text.split("x")) if text else ()


def _type(sc: _Scanner) -> TensorType:
    m = sc.match(_ELEM, "a type (f32, exact, bipolar, ternary, s8, u8, fixed<bits,frac>)")
    elem: Element
    if m.group(1):
        named: dict[str, Element] = {"f32": Real(), "exact": Exact(), "bipolar": Bipolar(), "ternary": Ternary()}
        elem = named[m.group(1)]
    elif m.group(2):
        elem = Int(int(m.group(3)), m.group(2) == "s")
    else:
        elem = Fixed(int(m.group(4)), int(m.group(5)))
    return TensorType(elem, _shape(sc))


def _number(text: str) -> int | Fraction | float:
    if "/" in text:
        num, den = text.split("/")
        return Fraction(int(num), int(den))
    if any(c in text for c in ".eEn"):  # a point, an exponent, inf or nan
        return float(text)
    return int(text)


def _scalar(sc: _Scanner, tag: str):
    m = sc.match(_NUMBER, "a number")
    try:
        return _element(_number(m.group(0)), tag)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise sc.error(str(exc), m.start()) from None


def _element(v, tag: str):
    """One array element checked against the array's dtype."""
    if tag == "exact":
        if isinstance(v, float):
            raise TypeError(f"exact arrays hold integers and fractions n/d, not {v}")
        return Fraction(v)
    if tag in ("f32", "f64"):
        if isinstance(v, Fraction):
            raise TypeError(f"{tag} arrays hold decimals, not the fraction {v}")
        return float(v)
    if not isinstance(v, int):
        raise TypeError(f"{tag} arrays hold integers, not {v}")
    if tag == "bool" and v not in (0, 1):
        raise ValueError(f"bool arrays hold 0 and 1, not {v}")
    info = np.iinfo(DTYPES[tag]) if tag not in ("bool", "int") else None
    if info is not None and not info.min <= v <= info.max:
        raise ValueError(f"{v} does not fit in {tag}")
    return v


def _nested(sc: _Scanner, shape: tuple[int, ...], tag: str, out: list) -> None:
    if not shape:
        out.append(_scalar(sc, tag))
        return
    start = sc.skip()
    if len(shape) == 1:  # fast path for a whole row; the slow path below pinpoints any error
        m = _ROW.match(sc.text, start)
        if m and _NUMBERS.fullmatch(m.group(1)):
            try:
                items = [_element(_number(s.strip()), tag) for s in m.group(1).split(",")] if m.group(1).strip() else []
                if len(items) == shape[0]:
                    out.extend(items)
                    sc.pos = m.end()
                    return
            except (ValueError, TypeError, ZeroDivisionError, OverflowError):
                pass
    sc.expect("[")
    for i in range(shape[0]):
        if i:
            sc.expect(",")
        if sc.peek("]"):
            raise sc.error(f"expected {shape[0]} entries along this axis, found {i}")
        _nested(sc, shape[1:], tag, out)
    if not sc.peek("]"):
        raise sc.error(f"expected ']' after {shape[0]} entries along this axis, found {sc.found()}")
    sc.expect("]")


def _array(sc: _Scanner, tag: str) -> np.ndarray:
    shape = _shape(sc)
    flat: list = []
    _nested(sc, shape, tag, flat)
    if DTYPES[tag] is object:
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    return np.array(flat, dtype=DTYPES[tag]).reshape(shape)


def _const(sc: _Scanner):
    sc.skip()
    c = sc.text[sc.pos:sc.pos + 1]
    if c == '"':
        m = sc.match(_STRING, "a string")
        return _string(sc, m.group(0), m.start())
    if c == "(":
        sc.expect("(")
        items: list = []
        while not sc.accept(")"):
            if items:
                sc.expect(",")
            items.append(_const(sc))
        return tuple(items)
    if c == "{":
        return _attributes(sc)
    if c == "<":
        raise sc.error("an abbreviated array (the default printer's form) has no values: print with full=True")
    word = _WORD.match(sc.text, sc.pos)
    if word and word.group(0) in DTYPES:
        sc.pos = word.end()
        return _array(sc, word.group(0))
    m = sc.match(_NUMBER, "a constant (number, \"string\", (tuple), {record} or array like i8[2] [1, -1])")
    try:
        return _number(m.group(0))
    except ZeroDivisionError:
        raise sc.error("division by zero", m.start()) from None


def _attributes(sc: _Scanner) -> dict[str, tuple]:
    """{name: (value, position of the name, position of the value)} from `{a=1, b=...}`."""
    sc.expect("{")
    attrs: dict[str, tuple] = {}
    while not sc.accept("}"):
        if attrs:
            sc.expect(",")
        m = sc.match(_WORD, "an attribute name")
        if m.group(0) in attrs:
            raise sc.error(f"attribute '{m.group(0)}' given twice", m.start())
        sc.expect("=")
        value_pos = sc.skip()
        attrs[m.group(0)] = (_const(sc), m.start(), value_pos)
    return attrs


def _field_value(sc: _Scanner, kind: str, field: dataclasses.Field, value, pos: int):
    """An attribute checked (and converted) against its dataclass field's annotation."""
    want = str(field.type)

    def wrong(what: str) -> ParseError:
        return sc.error(f"{kind}: {field.name} must be {what}, not {value!r}"[:200], pos)

    if want in ("np.ndarray", "np.ndarray | None"):
        if not isinstance(value, np.ndarray):
            raise wrong("an array like i64[2] [1, 2]")
    elif want == "int":
        if type(value) is not int:
            raise wrong("an integer")
    elif want == "float":
        if type(value) not in (int, float):
            raise wrong("a number")
        value = float(value)
    elif want == "str":
        if not isinstance(value, str):
            raise wrong('a "string"')
    elif want.startswith("tuple"):
        if not isinstance(value, tuple) or any(type(v) is not int for v in value):
            raise wrong("a tuple of integers")
    elif want == "Reuse | None":
        if not isinstance(value, dict) or set(value) != {"parent", "negate"}:
            raise wrong("{parent=i64[C] [...], negate=bool[C] [...]}")
        parent, negate = (value[k][0] for k in ("parent", "negate"))  # (value, positions)
        if not (isinstance(parent, np.ndarray) and parent.dtype == np.int64
                and isinstance(negate, np.ndarray) and negate.dtype == np.bool_):
            raise wrong("{parent=i64[C] [...], negate=bool[C] [...]}")
        value = Reuse(parent=parent, negate=negate)
    return value


def _check_reuse(reuse: Reuse, channels: int) -> None:
    """A reuse tree the interpreter can follow: one parent per channel, no cycle."""
    if reuse.parent.shape != (channels,) or reuse.negate.shape != (channels,):
        raise IRError(f"the reuse tree needs a parent and a negate flag for each of the {channels} channels")
    if np.any(reuse.parent < -1) or np.any(reuse.parent >= channels):
        raise IRError(f"reuse parents must be channels (0..{channels - 1}) or -1 (from scratch)")
    reuse.depths()  # raises on a cycle


def _op(sc: _Scanner, types: dict) -> tuple[Op, bool, int]:
    """One op, checked against the values defined so far; returns (op, written host, its position)."""
    out, out_pos = _value_name(sc)
    if out in types:
        raise sc.error(f"%{out} is defined twice", out_pos)
    sc.expect("=")
    kind_pos = sc.skip()
    kind = sc.match(_WORD, "an op kind").group(0)
    host = kind == "host"
    if host:
        kind_pos = sc.skip()
        kind = sc.match(_WORD, "an op kind").group(0)
    cls = _OP_KINDS.get(kind)
    if cls is None:
        raise sc.error(f"unknown op '{kind}' (known: {', '.join(sorted(_OP_KINDS))})", kind_pos)
    inputs: list[str] = []
    while (sc.peek("%") and not inputs) or (inputs and sc.accept(",")):
        name, pos = _value_name(sc)
        if name not in types:
            raise sc.error(f"%{name} is not defined before it is used", pos)
        inputs.append(name)
    attrs = _attributes(sc) if sc.peek("{") else {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("out", "inputs")}
    kwargs = {}
    for key, (value, name_pos, value_pos) in attrs.items():
        if key not in fields:
            raise sc.error(f"{kind} has no attribute '{key}' (it has: {', '.join(fields)})", name_pos)
        kwargs[key] = _field_value(sc, kind, fields[key], value, value_pos)
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise sc.error(f"{kind} needs the attribute{'s' if len(missing) > 1 else ''} {', '.join(missing)}", kind_pos)
    try:
        op = cls(out, tuple(inputs), **kwargs)
        computed = op.result_type([types[i] for i in inputs])
        if getattr(op, "reuse", None) is not None:
            _check_reuse(op.reuse, op.weights.shape[0])
    except (IRError, ValueError, TypeError, IndexError) as exc:
        raise sc.error(f"{kind} %{out}: {exc}", kind_pos) from None
    sc.expect(":")
    type_pos = sc.skip()
    written = _type(sc)
    if written != computed:
        raise sc.error(f"%{out} has type {computed}, not {written}", type_pos)
    types[out] = computed
    return op, host, kind_pos


def parse_graph(text: str) -> Graph:
    """The Graph written as `text` (the full form of `print_graph`); raises ParseError."""
    sc = _Scanner(text)
    sc.expect("graph")
    if sc.peek('"'):
        m = sc.match(_STRING, "a graph name")
        name = _string(sc, m.group(0), m.start())
    else:
        name = sc.match(re.compile(r"[A-Za-z0-9_.]+"), "a graph name").group(0)
    sc.expect("(")
    inputs: list[tuple[str, TensorType]] = []
    types: dict[str, TensorType] = {}
    while not sc.accept(")"):
        if inputs:
            sc.expect(",")
        value, pos = _value_name(sc)
        if value in types:
            raise sc.error(f"input %{value} is given twice", pos)
        sc.expect(":")
        types[value] = _type(sc)
        inputs.append((value, types[value]))
    sc.expect("->")
    sc.expect("(")
    outputs: list[tuple[str, int]] = []
    while not sc.accept(")"):
        if outputs:
            sc.expect(",")
        outputs.append(_value_name(sc))
    sc.expect("{")
    written = []
    while not sc.accept("}"):
        if not sc.peek("%"):
            raise sc.error(f"expected an op (%name = ...) or '}}', found {sc.found()}")
        written.append(_op(sc, types))
    if sc.skip() < len(text):
        raise sc.error(f"expected the end of the text after the graph, found {sc.found()}")
    for value, pos in outputs:
        if value not in types:
            raise sc.error(f"graph output %{value} is not defined", pos)
    graph = Graph(name, tuple(inputs), tuple(op for op, _, _ in written), tuple(v for v, _ in outputs))
    for op, host, pos in written:
        if graph.on_host(op) != host:
            where = "runs on the host: write 'host' before" if graph.on_host(op) else "is not on the host: drop 'host' before"
            raise sc.error(f"%{op.out} {where} '{op.kind}'", pos)
    return graph
