"""``ActionExecutor``: every outcome of a tool call is an ``ActionReturn``, sync and async."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from pydantic import BaseModel, field_validator

from lagent.actions import ActionExecutor, BaseAction, Calculator, tool
from lagent.schema import ActionReturn, ActionStatusCode, ActionValidCode, FunctionCall, ToolCall


@tool
def add(a: int, b: int = 1) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


@tool
def fail(message: str) -> None:
    """Always raise."""
    raise ValueError(message)


@tool
def nap(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return 'awake'


@tool
async def anap(seconds: float) -> str:
    """Sleep asynchronously, then answer."""
    await asyncio.sleep(seconds)
    return 'awake'


class Reading(BaseModel):
    city: str
    celsius: float


@tool
def reading(city: str) -> Reading:
    """A typed reading."""
    return Reading(city=city, celsius=21.5)


@tool
def table() -> dict:
    """A dict result."""
    return {'rows': [1, 2], 'name': 'é'}


class Counter(BaseAction):
    """Counts."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.closed = False

    def increment(self, by: int = 1) -> int:
        """Increment the counter.

        Args:
            by: How much to add.
        """
        self.count += by
        return self.count

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def executor() -> ActionExecutor:
    return ActionExecutor([add, fail, nap, anap, reading, table, Counter(), Calculator()], timeout=0.5)


def test_names_schemas_and_description(executor: ActionExecutor):
    assert executor.names == ['add', 'fail', 'nap', 'anap', 'reading', 'table', 'Counter_increment', 'Calculator']
    assert 'add' in executor and 'missing' not in executor and len(executor) == 8
    schemas = executor.tool_schemas()
    assert schemas[0] == add.schema
    assert [s['function']['name'] for s in schemas] == executor.names
    text = executor.describe()
    first_block = text.split('\n\n')[0]
    assert first_block == ('add: Add two integers.\nParameters: ' + json.dumps(add.parameters, ensure_ascii=False))
    assert text.count('\n\n') == len(executor) - 1
    assert 'Counter_increment: Increment the counter.' in text


def test_success_with_dict_and_json_arguments(executor: ActionExecutor):
    for arguments in ({'a': 2, 'b': 3}, '{"a": 2, "b": 3}', {'a': '2', 'b': 3}):
        result = executor.execute('add', arguments, tool_call_id='call-1')
        assert result == ActionReturn(
            type='add',
            args={'a': 2, 'b': 3},
            result=[{'type': 'text', 'content': '5'}],
            state=ActionStatusCode.SUCCESS,
            valid=ActionValidCode.FINISH,
            tool_call_id='call-1',
        )
    assert executor.execute('add', '{"a": 1}').args == {'a': 1, 'b': 1}
    assert executor.execute('table', None).format_result() == '{"rows":[1,2],"name":"é"}'
    assert executor.execute('table', '').state == ActionStatusCode.SUCCESS


def test_structured_results_are_json(executor: ActionExecutor):
    assert executor.execute('reading', {'city': 'Oslo'}).format_result() == '{"city":"Oslo","celsius":21.5}'


def test_unknown_tool_lists_the_tools(executor: ActionExecutor):
    result = executor.execute('subtract', {'a': 1}, tool_call_id='c')
    assert result.state == ActionStatusCode.INVALID_ACTION
    assert result.valid == ActionValidCode.INVALID
    assert result.tool_call_id == 'c'
    assert result.errmsg == (
        "Unknown tool 'subtract'. Available tools: add, fail, nap, anap, reading, table, Counter_increment, Calculator."
    )


@pytest.mark.parametrize(
    ('arguments', 'expected'),
    [
        ('{"a": 1,', "Arguments of tool 'add' are not valid JSON (Expecting property name"),
        ('[1, 2]', "Arguments of tool 'add' must be a JSON object, got list."),
        (42, "Arguments of tool 'add' must be a JSON object, got int."),
    ],
)
def test_unparseable_arguments(executor: ActionExecutor, arguments, expected):
    result = executor.execute('add', arguments)
    assert result.state == ActionStatusCode.ARGS_ERROR
    assert result.valid == ActionValidCode.INVALID
    assert result.errmsg.startswith(expected)
    assert result.errmsg.endswith('Expected arguments: a (integer, required), b (integer, default 1).')


def test_invalid_arguments_say_which_and_what_was_expected(executor: ActionExecutor):
    result = executor.execute('add', {'a': 'three', 'z': 1})
    assert result.state == ActionStatusCode.ARGS_ERROR
    assert result.valid == ActionValidCode.FINISH
    assert result.args == {'a': 'three', 'z': 1}
    assert "argument 'a': Input should be a valid integer" in result.errmsg
    assert "unexpected argument 'z'" in result.errmsg
    assert result.format_result() == result.errmsg


def test_hostile_inputs_and_results_never_raise(executor: ActionExecutor):
    assert executor.execute(['not', 'a', 'name'], {}).state == ActionStatusCode.INVALID_ACTION  # type: ignore[arg-type]
    int_keys = executor.execute('add', {1: 2})
    assert (int_keys.state, int_keys.args) == (ActionStatusCode.ARGS_ERROR, {'1': 2})

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError('no text for you')

    @tool
    def odd() -> object:
        """Return something that cannot be shown."""
        return Unprintable()

    result = ActionExecutor([odd]).execute('odd', tool_call_id='t')
    assert (result.state, result.errmsg, result.tool_call_id) == (
        ActionStatusCode.API_ERROR,
        'RuntimeError: no text for you',
        't',
    )


def test_a_validator_raising_something_else_is_an_args_error():
    class Strict(BaseModel):
        value: int

        @field_validator('value')
        @classmethod
        def _explode(cls, value: int) -> int:
            raise KeyError('surprise')

    @tool
    def strict(payload: Strict) -> None:
        """Validate strictly."""

    result = ActionExecutor([strict]).execute('strict', {'payload': {'value': 1}})
    assert result.state == ActionStatusCode.ARGS_ERROR
    assert result.errmsg.startswith(
        "Invalid arguments for tool 'strict': KeyError: 'surprise'. Expected arguments: payload"
    )


def test_raising_tool_becomes_api_error(executor: ActionExecutor):
    result = executor.execute('fail', {'message': 'boom'})
    assert result.state == ActionStatusCode.API_ERROR
    assert result.errmsg == 'ValueError: boom'
    assert result.args == {'message': 'boom'}


def test_system_exit_in_a_tool_is_contained():
    @tool
    def leave() -> None:
        """Exit."""
        raise SystemExit(3)

    assert ActionExecutor([leave]).execute('leave').errmsg == 'SystemExit: 3'
    assert ActionExecutor([leave], timeout=None).execute('leave').errmsg == 'SystemExit: 3'


def test_sync_timeout(executor: ActionExecutor):
    started = time.monotonic()
    result = executor.execute('nap', {'seconds': 10})
    assert time.monotonic() - started < 5
    assert result.state == ActionStatusCode.API_ERROR
    assert result.errmsg == 'nap timed out after 0.5s'
    assert executor.execute('nap', {'seconds': 0}).format_result() == 'awake'


def test_async_tool_in_sync_executor(executor: ActionExecutor):
    assert executor.execute('anap', {'seconds': 0}).format_result() == 'awake'
    assert executor.execute('anap', {'seconds': 10}).errmsg == 'anap timed out after 0.5s'


async def test_sync_executor_call_inside_a_running_loop(executor: ActionExecutor):
    assert executor.execute('anap', {'seconds': 0}).format_result() == 'awake'


async def test_async_executor(executor: ActionExecutor):
    result = await executor.aexecute('add', '{"a": 40, "b": 2}', tool_call_id='x')
    assert (result.state, result.format_result(), result.tool_call_id) == (ActionStatusCode.SUCCESS, '42', 'x')
    assert (await executor.aexecute('anap', {'seconds': 0})).format_result() == 'awake'
    assert (await executor.aexecute('nap', {'seconds': 0})).format_result() == 'awake'
    assert (await executor.aexecute('fail', {'message': 'x'})).errmsg == 'ValueError: x'
    assert (await executor.aexecute('nope')).state == ActionStatusCode.INVALID_ACTION
    assert (await executor.aexecute('add', '{')).state == ActionStatusCode.ARGS_ERROR


async def test_async_timeouts(executor: ActionExecutor):
    started = time.monotonic()
    results = await asyncio.gather(
        executor.aexecute('anap', {'seconds': 10}), executor.aexecute('nap', {'seconds': 10})
    )
    assert time.monotonic() - started < 5
    assert [r.errmsg for r in results] == ['anap timed out after 0.5s', 'nap timed out after 0.5s']


def test_abandoned_sync_tool_does_not_hold_up_the_event_loop_shutdown(executor: ActionExecutor):
    started = time.monotonic()
    result = asyncio.run(executor.aexecute('nap', {'seconds': 10}))
    assert result.errmsg == 'nap timed out after 0.5s'
    assert time.monotonic() - started < 5  # asyncio.to_thread would wait the 10 s out at loop shutdown


async def test_a_tools_own_timeout_error_is_not_the_executors():
    @tool
    async def flaky() -> None:
        """Raise TimeoutError itself."""
        raise TimeoutError('upstream took too long')

    executor = ActionExecutor([flaky], timeout=5)
    assert (await executor.aexecute('flaky')).errmsg == 'TimeoutError: upstream took too long'
    assert executor.execute('flaky').errmsg == 'TimeoutError: upstream took too long'


def test_execute_call_with_a_native_tool_call(executor: ActionExecutor):
    call = ToolCall(id='call_7', function=FunctionCall(name='add', arguments='{"a": 6, "b": 7}'))
    result = executor.execute_call(call)
    assert (result.format_result(), result.tool_call_id, result.type) == ('13', 'call_7', 'add')


async def test_aexecute_call(executor: ActionExecutor):
    call = ToolCall(id='call_8', function=FunctionCall(name='Calculator', arguments='{"expression": "37 * 12"}'))
    result = await executor.aexecute_call(call)
    assert (result.format_result(), result.tool_call_id) == ('444', 'call_8')


def test_tool_returning_an_action_return_is_completed():
    @tool
    def custom(x: int) -> ActionReturn:
        """Report a custom failure."""
        return ActionReturn(errmsg=f'bad {x}', state=ActionStatusCode.API_ERROR)

    result = ActionExecutor([custom]).execute('custom', {'x': 1}, tool_call_id='t')
    assert (result.type, result.args, result.tool_call_id, result.errmsg) == ('custom', {'x': 1}, 't', 'bad 1')
    assert result.valid == ActionValidCode.FINISH


def test_plain_functions_are_wrapped():
    def double(x: int) -> int:
        """Double it."""
        return 2 * x

    executor = ActionExecutor([double])
    assert executor.names == ['double']
    assert executor.execute('double', {'x': 4}).format_result() == '8'


def test_construction_errors():
    with pytest.raises(ValueError, match="two tools are named 'add'"):
        ActionExecutor([add, add])
    with pytest.raises(ValueError, match='timeout must be positive'):
        ActionExecutor([add], timeout=0)
    with pytest.raises(TypeError, match='expected a Tool, a BaseAction or a function'):
        ActionExecutor([42])


def test_executors_do_not_share_state():
    first, second = ActionExecutor([Counter()]), ActionExecutor([Counter()])
    first.execute('Counter_increment', {'by': 5})
    assert second.execute('Counter_increment', {}).format_result() == '1'
    assert ActionExecutor().names == [] and first.names == ['Counter_increment']


def test_close_closes_actions():
    counter = Counter()
    with ActionExecutor([counter, add]):
        pass
    assert counter.closed


def test_concurrent_calls_from_threads():
    executor = ActionExecutor([Counter()], timeout=5)
    results: list[ActionReturn] = []

    def work() -> None:
        for _ in range(20):
            results.append(executor.execute('Counter_increment', {'by': 1}))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and all(r.state == ActionStatusCode.SUCCESS for r in results)
