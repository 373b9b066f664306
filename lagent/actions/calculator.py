"""``Calculator``: arithmetic a model can trust, evaluated from the syntax tree
(no ``eval``), with guards against inputs that would take forever."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from lagent.actions.base_action import BaseAction

__all__ = ['Calculator', 'CalculatorError']

Number = int | float


class CalculatorError(ValueError):
    """The expression is not allowed or cannot be computed within the limits."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SIGNS = str.maketrans({'×': '*', '÷': '/', '−': '-'})
_MAX_PRINTABLE_BITS = 14_000  # 4,215 digits: below the 4,300 digits int-to-str conversion allows
_CONSTANTS: dict[str, float] = {'pi': math.pi, 'e': math.e, 'tau': math.tau, 'inf': math.inf}


def _factorial(n: Number) -> int:
    if isinstance(n, float) and not n.is_integer():
        raise CalculatorError('factorial() needs a whole number')
    if n > 1000:
        raise CalculatorError('factorial() is limited to n <= 1000')
    return math.factorial(int(n))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    'abs': abs,
    'round': round,
    'min': min,
    'max': max,
    'sqrt': math.sqrt,
    'cbrt': lambda x: math.copysign(abs(x) ** (1 / 3), x),
    'exp': math.exp,
    'log': math.log,
    'log2': math.log2,
    'log10': math.log10,
    'sin': math.sin,
    'cos': math.cos,
    'tan': math.tan,
    'asin': math.asin,
    'acos': math.acos,
    'atan': math.atan,
    'atan2': math.atan2,
    'sinh': math.sinh,
    'cosh': math.cosh,
    'tanh': math.tanh,
    'degrees': math.degrees,
    'radians': math.radians,
    'hypot': math.hypot,
    'floor': math.floor,
    'ceil': math.ceil,
    'trunc': math.trunc,
    'gcd': math.gcd,
    'lcm': math.lcm,
    'factorial': _factorial,
}


class Calculator(BaseAction):
    """Evaluates arithmetic expressions safely.

    Allowed: numbers, ``+ - * / // % **``, unary ``+``/``-``, parentheses,
    the constants ``pi e tau inf`` and the functions ``abs round min max sqrt
    cbrt exp log log2 log10 sin cos tan asin acos atan atan2 sinh cosh tanh
    degrees radians hypot floor ceil trunc gcd lcm factorial``. Anything else
    (names, attributes, strings, comprehensions...) is refused.

    Args:
        max_length: Longest expression accepted, in characters.
        max_bits: Largest integer result (intermediate ones included), in bits,
            at most 14,000 (Python prints integers of up to 4,300 digits);
            powers whose result would be larger are refused before computing.
        name: The tool's name (default ``'Calculator'``).
    """

    def __init__(self, *, max_length: int = 1000, max_bits: int = 10_000, name: str | None = None):
        super().__init__(name)
        if not 1 <= max_bits <= _MAX_PRINTABLE_BITS:
            raise ValueError(f'max_bits must be between 1 and {_MAX_PRINTABLE_BITS}, got {max_bits}')
        self.max_length = max_length
        self.max_bits = max_bits

    def run(self, expression: str) -> str:
        """Evaluate an arithmetic expression exactly (integers) or to 15 significant
        digits (floats). Allowed: numbers, + - * / // % ** (power), parentheses,
        the constants pi, e, tau, inf and the functions abs, round, min, max,
        sqrt, cbrt, exp, log, log2, log10, sin, cos, tan, asin, acos, atan, atan2,
        sinh, cosh, tanh, degrees, radians, hypot, floor, ceil, trunc, gcd, lcm,
        factorial.

        Args:
            expression: The expression, e.g. ``37 * 12`` or ``sqrt(2) * pi``.

        Raises:
            CalculatorError: The expression uses something not allowed or is too large.
            ZeroDivisionError: A division by zero.
            OverflowError: A float result out of range.
        """
        if len(expression) > self.max_length:
            raise CalculatorError(f'expression is too long ({len(expression)} > {self.max_length} characters)')
        try:
            tree = ast.parse(_plain(expression), mode='eval')
        except SyntaxError as exc:
            raise CalculatorError(f'not a valid expression: {exc.msg}') from None
        return _format(self._evaluate(tree.body))

    def _evaluate(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise CalculatorError(f'only numbers are allowed, got {node.value!r}')
            return self._checked(node.value)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.BitXor):
                raise CalculatorError('"^" is not a power here: use "**"')
            operation = _BINARY.get(type(node.op))
            if operation is None:
                raise CalculatorError(f'operator {type(node.op).__name__} is not allowed')
            left, right = self._evaluate(node.left), self._evaluate(node.right)
            if isinstance(node.op, ast.Pow):
                self._check_power(left, right)
            return self._checked(operation(left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._evaluate(node.operand))
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise CalculatorError(f'unknown name {node.id!r}; constants: {", ".join(_CONSTANTS)}')
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(f'{type(node).__name__} is not allowed in an arithmetic expression')

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise CalculatorError(f'only named functions may be called; functions: {", ".join(_FUNCTIONS)}')
        if node.func.id not in _FUNCTIONS:
            raise CalculatorError(f'unknown function {node.func.id!r}; functions: {", ".join(_FUNCTIONS)}')
        if node.keywords:
            raise CalculatorError('keyword arguments are not allowed')
        arguments = [self._evaluate(argument) for argument in node.args]
        try:
            return self._checked(_FUNCTIONS[node.func.id](*arguments))
        except TypeError as exc:
            raise CalculatorError(f'{node.func.id}(): {exc}') from None

    def _check_power(self, base: Number, exponent: Number) -> None:
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
            bits = exponent * math.log2(abs(base))
            if bits > self.max_bits:
                raise CalculatorError(f'result too large: about {bits:.3g} bits (limit {self.max_bits})')

    def _checked(self, value: Number) -> Number:
        if isinstance(value, complex):
            raise CalculatorError('the result is a complex number')
        if isinstance(value, int) and value.bit_length() > self.max_bits:
            raise CalculatorError(f'result too large: {value.bit_length()} bits (limit {self.max_bits})')
        return value


def _plain(expression: str) -> str:
    """The expression with the math signs models often write (``×``, ``÷``,
    ``−``, a trailing ``=``) replaced by Python's."""
    return expression.translate(_SIGNS).strip().removesuffix('=').strip()


def _format(value: Number) -> str:
    if isinstance(value, float):
        return format(value, '.15g')
    return str(value)
