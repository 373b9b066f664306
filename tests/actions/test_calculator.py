"""``Calculator``: safe AST arithmetic, refusals, and guards against expensive input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lagent.actions import ActionExecutor, Calculator, CalculatorError
from lagent.schema import ActionStatusCode


@pytest.fixture
def calculator() -> Calculator:
    return Calculator()


@pytest.mark.parametrize(
    ('expression', 'expected'),
    [
        ('37 * 12', '444'),
        ('37 × 12 =', '444'),
        ('10 ÷ 4 − 1', '1.5'),
        ('1 + 2 * 3 - 4', '3'),
        ('(1 + 2) * 3', '9'),
        ('7 / 2', '3.5'),
        ('7 // 2', '3'),
        ('-7 % 3', '2'),
        ('2 ** 10', '1024'),
        ('2 ** -1', '0.5'),
        ('-(3 - 5)', '2'),
        ('+4', '4'),
        ('0.1 + 0.2', '0.3'),
        ('1e3 + 1', '1001'),
        ('sqrt(16)', '4'),
        ('sqrt(2)', '1.4142135623731'),
        ('round(pi, 4)', '3.1416'),
        ('abs(-3) + max(1, 5, 2) - min(4, 2)', '6'),
        ('log(e)', '1'),
        ('log(8, 2)', '3'),
        ('log10(1000)', '3'),
        ('sin(0) + cos(0)', '1'),
        ('degrees(pi)', '180'),
        ('floor(2.7) + ceil(2.1)', '5'),
        ('gcd(12, 18)', '6'),
        ('factorial(5)', '120'),
        ('hypot(3, 4)', '5'),
        ('cbrt(-27)', '-3'),
        ('  12345678901234567890 * 10  ', '123456789012345678900'),
        ('2 ** 100', str(2**100)),
        ('tau / 2', '3.14159265358979'),
    ],
)
def test_arithmetic(calculator: Calculator, expression: str, expected: str):
    assert calculator.run(expression) == expected


@pytest.mark.parametrize(
    ('expression', 'message'),
    [
        ('__import__("os")', "unknown function '__import__'"),
        ('__import__("os").system("true")', 'only named functions may be called'),
        ('open("/etc/passwd")', "unknown function 'open'"),
        ('x + 1', "unknown name 'x'"),
        ('math.pi', 'Attribute is not allowed'),
        ('"a" * 3', "only numbers are allowed, got 'a'"),
        ('True + 1', 'only numbers are allowed, got True'),
        ('[1, 2]', 'List is not allowed'),
        ('(lambda: 1)()', 'only named functions may be called'),
        ('2 ^ 3', '"^" is not a power here: use "**"'),
        ('1 << 100000', 'operator LShift is not allowed'),
        ('1 if 1 else 2', 'IfExp is not allowed'),
        ('1 < 2', 'Compare is not allowed'),
        ('round(2.5, ndigits=0)', 'keyword arguments are not allowed'),
        ('1 +', 'not a valid expression'),
        ('min()', 'min(): min expected at least 1 argument'),
        ('(-8) ** 0.5', 'the result is a complex number'),
        ('factorial(5000)', 'factorial() is limited to n <= 1000'),
        ('factorial(2.5)', 'factorial() needs a whole number'),
    ],
)
def test_refusals(calculator: Calculator, expression: str, message: str):
    with pytest.raises(CalculatorError) as caught:
        calculator.run(expression)
    assert message in str(caught.value)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    'expression',
    ['9**9**9', '10**100000', '(2**5000)**3', '2**9999 * 2**9999 * 2**9999', '99999999999**999999'],
)
def test_huge_results_are_refused_before_computing(calculator: Calculator, expression: str):
    with pytest.raises(CalculatorError, match='result too large'):
        calculator.run(expression)


def test_float_overflow_and_division_by_zero(calculator: Calculator):
    with pytest.raises(OverflowError):
        calculator.run('10.0 ** 400')
    with pytest.raises(OverflowError):
        calculator.run('exp(1000)')
    with pytest.raises(ZeroDivisionError):
        calculator.run('1 / 0')


def test_long_input_is_refused(calculator: Calculator):
    with pytest.raises(CalculatorError, match='expression is too long'):
        calculator.run('1+' * 600 + '1')
    assert Calculator(max_length=5000).run('1+' * 600 + '1') == '601'


def test_limits_are_configurable():
    assert Calculator(max_bits=14_000).run('2 ** 13000') == str(2**13000)
    with pytest.raises(ValueError, match='max_bits must be between 1 and 14000'):
        Calculator(max_bits=20_000)
    with pytest.raises(CalculatorError, match='limit 64'):
        Calculator(max_bits=64).run('2 ** 100')


def test_errors_through_the_executor_are_action_returns():
    executor = ActionExecutor([Calculator()])
    assert executor.names == ['Calculator']
    ok = executor.execute('Calculator', {'expression': '37 * 12'})
    assert (ok.state, ok.format_result()) == (ActionStatusCode.SUCCESS, '444')
    refused = executor.execute('Calculator', {'expression': '9**9**9'})
    assert refused.state == ActionStatusCode.API_ERROR
    assert refused.errmsg.startswith('CalculatorError: result too large')
    assert executor.execute('Calculator', {'expression': '1/0'}).errmsg == 'ZeroDivisionError: division by zero'
    assert executor.execute('Calculator', {}).state == ActionStatusCode.ARGS_ERROR


def test_schema():
    (calculator_tool,) = Calculator().tools
    assert calculator_tool.parameters['required'] == ['expression']
    assert calculator_tool.parameters['properties']['expression']['type'] == 'string'
    assert 'sqrt' in calculator_tool.description


def _expressions() -> st.SearchStrategy[tuple[str, int]]:
    """Integer expressions with the value Python gives them, built side by side."""
    leaves = st.integers(min_value=-1000, max_value=1000).map(lambda n: (f'({n})' if n < 0 else str(n), n))

    def combine(children: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
        def apply(left: tuple[str, int], operator: str, right: tuple[str, int]) -> tuple[str, int]:
            values = {'+': left[1] + right[1], '-': left[1] - right[1], '*': left[1] * right[1]}
            if operator in ('//', '%'):
                if right[1] == 0:
                    return left
                values = {'//': left[1] // right[1], '%': left[1] % right[1]}
            return f'({left[0]} {operator} {right[0]})', values[operator]

        return st.builds(apply, children, st.sampled_from(['+', '-', '*', '//', '%']), children)

    return st.recursive(leaves, combine, max_leaves=12)


@given(_expressions())
def test_integer_arithmetic_matches_python(expression: tuple[str, int]):
    text, value = expression
    assert Calculator().run(text) == str(value)
