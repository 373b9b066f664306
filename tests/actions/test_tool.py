"""``@tool`` and ``BaseAction``: schemas from type hints and docstrings, decoration-time errors, validation."""

from __future__ import annotations

import functools
from typing import Annotated, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from lagent.actions import BaseAction, Tool, ToolArgumentsError, tool
from lagent.actions._docstring import parse_docstring


def _parameters(properties: dict, required: list[str], **extra) -> dict:
    return {'type': 'object', 'properties': properties, 'required': required, 'additionalProperties': False, **extra}


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


# --------------------------------------------------------------------------- the basics


def test_name_description_schema_and_direct_call():
    assert add.name == 'add'
    assert add.description == 'Add two integers.'
    assert add.schema == {
        'type': 'function',
        'function': {
            'name': 'add',
            'description': 'Add two integers.',
            'parameters': _parameters(
                {
                    'a': {'type': 'integer', 'description': 'The first number.'},
                    'b': {'type': 'integer', 'description': 'The second number.'},
                },
                ['a', 'b'],
            ),
        },
    }
    assert add(1, 2) == 3
    assert add(a=1, b=2) == 3
    assert isinstance(add, Tool)
    assert add.__name__ == 'add' and add.__doc__.startswith('Add two integers.')


def test_schema_is_a_copy():
    add.schema['function']['parameters']['properties'].clear()
    add.parameters['required'].clear()
    assert add.parameters['required'] == ['a', 'b']


def test_overrides():
    @tool(name='custom-name', description='Custom text.')
    def f(x: str) -> str:
        """Original text."""
        return x

    assert (f.name, f.description) == ('custom-name', 'Custom text.')
    assert f.schema['function']['name'] == 'custom-name'


def test_no_parameters():
    @tool
    def now() -> str:
        """The time."""
        return '12:00'

    assert now.parameters == {'type': 'object', 'properties': {}, 'required': [], 'additionalProperties': False}
    assert now.describe_arguments() == 'Expected no arguments: pass {}.'
    call, validated = now.bind({})
    assert (call(), validated) == ('12:00', {})


# --------------------------------------------------------------------------- every supported hint


class Point(BaseModel):
    """A point."""

    x: float
    y: float = 0.0


def test_every_supported_hint():
    @tool
    def everything(
        count: int,
        ratio: float,
        flag: bool,
        text: str,
        items: list[int],
        mapping: dict[str, float],
        mode: Literal['fast', 'slow'],
        maybe: Optional[int],  # noqa: UP045 (the old spelling must keep working)
        either: str | None,
        point: Point,
        points: list[Point],
        annotated: Annotated[int, 'Annotated text.'],
        field: Annotated[str, Field(description='Field text.', min_length=1)],
        defaulted: int = 3,
        field_default: float = Field(0.5, description='Default field.', ge=0),
    ) -> None:
        """Use every kind of hint."""

    point_schema = {
        'description': 'A point.',
        'type': 'object',
        'properties': {'x': {'type': 'number'}, 'y': {'type': 'number', 'default': 0.0}},
        'required': ['x'],
    }
    assert everything.parameters == {
        'type': 'object',
        'additionalProperties': False,
        '$defs': {'Point': point_schema},
        'properties': {
            'count': {'type': 'integer'},
            'ratio': {'type': 'number'},
            'flag': {'type': 'boolean'},
            'text': {'type': 'string'},
            'items': {'type': 'array', 'items': {'type': 'integer'}},
            'mapping': {'type': 'object', 'additionalProperties': {'type': 'number'}},
            'mode': {'type': 'string', 'enum': ['fast', 'slow']},
            'maybe': {'anyOf': [{'type': 'integer'}, {'type': 'null'}]},
            'either': {'anyOf': [{'type': 'string'}, {'type': 'null'}]},
            'point': {'$ref': '#/$defs/Point'},
            'points': {'type': 'array', 'items': {'$ref': '#/$defs/Point'}},
            'annotated': {'type': 'integer', 'description': 'Annotated text.'},
            'field': {'type': 'string', 'description': 'Field text.', 'minLength': 1},
            'defaulted': {'type': 'integer', 'default': 3},
            'field_default': {'type': 'number', 'default': 0.5, 'description': 'Default field.', 'minimum': 0},
        },
        'required': [
            'count',
            'ratio',
            'flag',
            'text',
            'items',
            'mapping',
            'mode',
            'maybe',
            'either',
            'point',
            'points',
            'annotated',
            'field',
        ],
    }


def test_optional_with_default_none_is_not_required():
    @tool
    def f(limit: int | None = None) -> None:
        """F."""

    assert f.parameters == _parameters(
        {'limit': {'anyOf': [{'type': 'integer'}, {'type': 'null'}], 'default': None}}, []
    )


def test_parameter_named_like_basemodel_attributes():
    @tool
    def f(json: str, schema: int, model_config: bool, title: str) -> None:
        """Names pydantic models use for themselves."""

    assert f.parameters == _parameters(
        {
            'json': {'type': 'string'},
            'schema': {'type': 'integer'},
            'model_config': {'type': 'boolean'},
            'title': {'type': 'string'},
        },
        ['json', 'schema', 'model_config', 'title'],
    )
    assert f.validate({'json': 'a', 'schema': '2', 'model_config': True, 'title': 't'}) == {
        'json': 'a',
        'schema': 2,
        'model_config': True,
        'title': 't',
    }


def test_description_precedence_field_over_annotated_over_docstring():
    @tool
    def f(
        a: Annotated[int, 'from annotated'],
        b: Annotated[int, Field(description='from annotated field')],
        c: int = Field(1, description='from default field'),
        d: int = 0,
    ) -> None:
        """F.

        Args:
            a: from docstring a
            b: from docstring b
            c: from docstring c
            d: from docstring d
        """

    properties = f.parameters['properties']
    assert [properties[name]['description'] for name in 'abcd'] == [
        'from annotated',
        'from annotated field',
        'from default field',
        'from docstring d',
    ]


# --------------------------------------------------------------------------- docstring styles


def test_google_docstring_with_types_continuations_and_other_sections():
    @tool
    def search(query: str, limit: int = 10, *, exact: bool = False) -> list[str]:
        """Search the index.

        Returns the best matches first.

        Args:
            query (str): What to look for. Words are
                matched case-insensitively.
            limit (Optional(int), optional): How many results
                to return.
            exact: Match the whole phrase.

        Returns:
            list[str]: The matching titles.

        Raises:
            ValueError: An empty query.
        """
        return []

    assert search.description == 'Search the index.\n\nReturns the best matches first.'
    assert search.parameters == _parameters(
        {
            'query': {'type': 'string', 'description': 'What to look for. Words are matched case-insensitively.'},
            'limit': {'type': 'integer', 'default': 10, 'description': 'How many results to return.'},
            'exact': {'type': 'boolean', 'default': False, 'description': 'Match the whole phrase.'},
        },
        ['query'],
    )


def test_numpy_docstring():
    @tool
    def scale(values: list[float], factor: float = 2.0) -> list[float]:
        """Scale values.

        Parameters
        ----------
        values : list of float
            The numbers to scale,
            in order.
        factor : float, optional
            What to multiply by.

        Returns
        -------
        list of float
            The scaled values.
        """
        return [value * factor for value in values]

    assert scale.description == 'Scale values.'
    assert scale.parameters == _parameters(
        {
            'values': {'type': 'array', 'items': {'type': 'number'}, 'description': 'The numbers to scale, in order.'},
            'factor': {'type': 'number', 'default': 2.0, 'description': 'What to multiply by.'},
        },
        ['values'],
    )


def test_parse_docstring_edge_cases():
    assert parse_docstring(None).description == ''
    assert parse_docstring('Just a summary.').parameters == {}
    parsed = parse_docstring(
        """Summary.

        Usage: not a section, stays in the description.

        Keyword Args:
            *args: Ignored stars.
            **options: Options.

        Parameters
        ----------
        x, y : int
            Coordinates.
        """
    )
    assert parsed.description == 'Summary.\n\nUsage: not a section, stays in the description.'
    assert parsed.parameters == {
        'args': 'Ignored stars.',
        'options': 'Options.',
        'x': 'Coordinates.',
        'y': 'Coordinates.',
    }


# --------------------------------------------------------------------------- decoration-time errors


def test_missing_type_hint_fails_at_decoration_naming_the_parameter():
    with pytest.raises(TypeError, match=r"parameter 'b' of tool 'f' has no type hint"):

        @tool
        def f(a: int, b) -> int:
            """F."""
            return a


def test_var_args_and_kwargs_are_refused():
    with pytest.raises(TypeError, match=r'\*args'):

        @tool
        def f(*args: int) -> None:
            """F."""

    with pytest.raises(TypeError, match=r'\*\*kwargs'):

        @tool
        def g(**kwargs: int) -> None:
            """G."""


def test_type_without_json_schema_is_refused_naming_the_parameter():
    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"parameter 'thing' of tool 'f' has a type without a JSON schema"):

        @tool
        def f(thing: Opaque) -> None:
            """F."""


def test_unresolvable_forward_reference():
    with pytest.raises(TypeError, match=r"cannot resolve the type hints of tool 'f'"):

        @tool
        def f(x: NoSuchType) -> None:  # noqa: F821
            """F."""


@pytest.mark.parametrize('name', ['has space', 'dot.ted', 'x' * 65, 'ünïcode'])
def test_invalid_names(name):
    with pytest.raises(ValueError, match='invalid tool name'):
        tool(name=name)(add.function)


def test_partials_and_callable_objects():
    def power(base: float, exponent: int) -> float:
        """Raise to a power.

        Args:
            base: The base.
            exponent: The exponent.
        """
        return base**exponent

    with pytest.raises(ValueError, match='has no __name__: pass name='):
        tool(functools.partial(power, exponent=2))
    square = tool(functools.partial(power, exponent=2), name='square')
    assert square.parameters == _parameters(
        {
            'base': {'type': 'number', 'description': 'The base.'},
            'exponent': {'type': 'integer', 'default': 2, 'description': 'The exponent.'},
        },
        ['base'],
    )
    assert square.invoke({'base': 3}) == 9

    class Greeter:
        def __call__(self, who: str) -> str:
            """Greet someone."""
            return f'hello {who}'

    greet = tool(Greeter(), name='greet')
    assert greet.parameters == _parameters({'who': {'type': 'string'}}, ['who'])
    assert greet.invoke({'who': 'you'}) == 'hello you'


def test_a_description_is_required():
    def undocumented(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="tool 'undocumented' has no description"):
        tool(undocumented)
    assert tool(undocumented, description='Echo.').description == 'Echo.'


def test_method_in_a_plain_class_points_to_base_action():
    with pytest.raises(TypeError, match=r"'self'.*BaseAction"):

        class NotAnAction:
            @tool
            def run(self, x: int) -> int:
                """Run."""
                return x


# --------------------------------------------------------------------------- validation


def test_validate_coerces_and_fills_defaults():
    @tool
    def f(n: int, point: Point, tags: list[str] | None = None) -> None:
        """F."""

    assert f.validate({'n': '3', 'point': {'x': 1}}) == {'n': 3, 'point': {'x': 1.0, 'y': 0.0}, 'tags': None}


def test_invoke_passes_models_and_positional_only_parameters():
    @tool
    def f(point: Point, /, scale: float = 1.0) -> float:
        """F."""
        assert isinstance(point, Point)
        return point.x * scale

    assert f.invoke({'point': {'x': 2}, 'scale': 3}) == 6.0


def test_validation_error_names_the_argument_and_what_was_expected():
    with pytest.raises(ToolArgumentsError) as caught:
        add.validate({'a': 'one', 'c': 3})
    message = str(caught.value)
    assert message.startswith("Invalid arguments for tool 'add': ")
    assert "argument 'a': Input should be a valid integer" in message
    assert "(got 'one')" in message
    assert "missing required argument 'b'" in message
    assert "unexpected argument 'c'" in message
    assert message.endswith('Expected arguments: a (integer, required), b (integer, required).')


def test_validation_error_in_nested_model_and_literal():
    @tool
    def f(point: Point, mode: Literal['fast', 'slow'] = 'fast') -> None:
        """F."""

    with pytest.raises(ToolArgumentsError) as caught:
        f.validate({'point': {'y': 'x'}, 'mode': 'medium'})
    message = str(caught.value)
    assert "missing required argument 'point.x'" in message
    assert "argument 'point.y': Input should be a valid number" in message
    assert "argument 'mode': Input should be 'fast' or 'slow'" in message
    assert "mode (one of 'fast', 'slow', default 'fast')" in message
    assert 'point (object Point, required)' in message


def test_validate_refuses_a_non_object():
    with pytest.raises(ToolArgumentsError, match='must be a JSON object, got list'):
        add.validate([1, 2])


async def test_async_tool():
    @tool
    async def slow_add(a: int, b: int) -> int:
        """Add, asynchronously."""
        return a + b

    assert slow_add.is_async and not add.is_async
    assert await slow_add(1, 2) == 3
    assert await slow_add.invoke({'a': 1, 'b': 2}) == 3


# --------------------------------------------------------------------------- BaseAction


class Weather(BaseAction):
    """Weather reports."""

    def __init__(self, unit: str = 'C', **kwargs):
        super().__init__(**kwargs)
        self.unit = unit
        self.calls: list[str] = []

    def forecast(self, city: str, days: int = 1) -> str:
        """Forecast the weather.

        Args:
            city: The city.
            days: Days ahead.
        """
        self.calls.append(city)
        return f'{city}: 20{self.unit} for {days} day(s)'

    def current(self, city: str) -> str:
        """Current weather.

        Args:
            city: The city.
        """
        return f'{city}: 18{self.unit}'

    def undocumented(self, city: str) -> str:
        return city

    def _private(self, city: str) -> str:
        """Private."""
        return city


def test_base_action_tools_are_documented_public_methods_named_class_method():
    weather = Weather()
    assert [t.name for t in weather.tools] == ['Weather_forecast', 'Weather_current']
    forecast = weather.tools[0]
    assert forecast.description == 'Forecast the weather.'
    assert forecast.parameters == _parameters(
        {
            'city': {'type': 'string', 'description': 'The city.'},
            'days': {'type': 'integer', 'default': 1, 'description': 'Days ahead.'},
        },
        ['city'],
    )
    assert forecast.invoke({'city': 'Paris'}) == 'Paris: 20C for 1 day(s)'
    assert weather.calls == ['Paris']


def test_base_action_instances_do_not_share_state():
    first, second = Weather(unit='C'), Weather(unit='F', name='Meteo')
    first.tools[0].invoke({'city': 'Oslo'})
    assert second.calls == []
    assert [t.name for t in second.tools] == ['Meteo_forecast', 'Meteo_current']
    assert second.tools[1].invoke({'city': 'Rome'}) == 'Rome: 18F'


def test_run_method_takes_the_action_name_and_falls_back_to_the_class_docstring():
    class Echo(BaseAction):
        """Echo the text back."""

        def run(self, text: str) -> str:
            return text

        def shout(self, text: str) -> str:
            """Echo in capitals."""
            return text.upper()

    class Explicit(Echo):
        tool_methods = ('run',)

    assert [t.name for t in Echo().tools] == ['Echo_shout']  # run has no docstring: not a tool
    explicit = Explicit().tools
    assert [(t.name, t.description) for t in explicit] == [('Explicit', 'Echo the text back.')]


def test_subclass_overriding_base_methods_does_not_make_them_tools():
    class Holder(BaseAction):
        def close(self) -> None:
            """Close it."""

        def ping(self) -> str:
            """Ping."""
            return 'pong'

    assert [t.name for t in Holder().tools] == ['Holder_ping']


def test_base_action_errors():
    class Bad(BaseAction):
        tool_methods = ('missing',)

    with pytest.raises(ValueError, match="names 'missing'"):
        _ = Bad().tools

    class Untyped(BaseAction):
        def go(self, where) -> None:
            """Go."""

    with pytest.raises(TypeError, match="parameter 'where' of tool 'Untyped_go' has no type hint"):
        _ = Untyped().tools

    with pytest.raises(ValueError, match='is invalid'):
        _ = Weather(name='x' * 60).tools
    with pytest.raises(ValueError, match="invalid action name 'my weather'"):
        Weather(name='my weather')
