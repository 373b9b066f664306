"""lagent 0.2 tool code, run unchanged: ``tool_api`` and its descriptions,
``BaseAction(description, parser, enable)`` called as ``action(inputs, name)``,
the parsers, the registry, the builtin actions, ``ActionExecutor``'s 0.2 API,
and ``ActionReturn`` as the dataclass it was (its result read as 0.1 and 0.2 read it)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from lagent.actions import (
    ActionExecutor,
    BaseAction,
    Calculator,
    FinishAction,
    InvalidAction,
    JsonParser,
    NoAction,
    TupleParser,
    get_tool,
    get_tool_cls,
    list_tools,
    tool_api,
)
from lagent.actions.action_executor import ActionExecutor as ExecutorFromOldPath
from lagent.actions.base_action import TOOL_REGISTRY
from lagent.actions.parser import ParseError
from lagent.schema import (
    ActionReturn,
    ActionStatusCode,
    ActionValidCode,
    AgentReturn,
    AgentStatusCode,
    ResultItems,
    dataclass2dict,
)


class PhraseEmphasis(BaseAction):
    """a toolkit which provides different styles of text emphasis"""

    @tool_api
    def bold(self, text):
        """make text bold

        Args:
            text (str): input text
        """
        return '**' + text + '**'

    @tool_api
    def italic(self, text: str, times: int = 1):
        """make text italic

        Args:
            text: input text
            times (int): how many times
        """
        return '*' * times + text + '*' * times

    def helper(self) -> str:
        """Public and documented, but not marked: not a tool of a class that marks its tools."""
        return ''


class Bold(BaseAction):
    def run(self, text: str) -> str:
        """make text bold

        Args:
            text: input text
        """
        return '**' + text + '**'


# ---------------------------------------------------------------------- tool_api and descriptions


def test_tool_api_describes_a_function_in_the_02_format() -> None:
    @tool_api(returns_named_value=True)
    def bold(text: str) -> str:
        """make text bold

        Args:
            text (str): input text

        Returns:
            bold_text (str): bold text
        """
        return '**' + text + '**'

    assert bold('x') == '**x**'  # still the function
    assert bold.api_description == {
        'name': 'bold',
        'description': 'make text bold',
        'parameters': [{'name': 'text', 'type': 'STRING', 'description': 'input text'}],
        'required': ['text'],
        'return_data': [{'name': 'bold_text', 'description': 'bold text', 'type': 'STRING'}],
    }

    @tool_api(explode_return=True)
    def list_args(a: str, b: int, c: float = 0.0) -> dict:
        """Return arguments in dict format

        Args:
            a (str): a
            b (int): b
            c (float): c

        Returns:
            dict: input arguments
                - a (str): a
                - b (int): b
                - c: c
        """
        return {'a': a, 'b': b, 'c': c}

    described = list_args.api_description
    assert [(p['name'], p['type']) for p in described['parameters']] == [
        ('a', 'STRING'),
        ('b', 'NUMBER'),
        ('c', 'FLOAT'),
    ]
    assert described['required'] == ['a', 'b']
    assert described['return_data'] == [
        {'name': 'a', 'description': 'a', 'type': 'STRING'},
        {'name': 'b', 'description': 'b', 'type': 'NUMBER'},
        {'name': 'c', 'description': 'c'},
    ]


def test_a_toolkit_of_marked_methods_and_its_description() -> None:
    action = PhraseEmphasis()
    assert [tool.name for tool in action.tools] == ['PhraseEmphasis_bold', 'PhraseEmphasis_italic']
    assert action.is_toolkit and action.enable
    description = action.description
    assert description['name'] == 'PhraseEmphasis'
    assert description['description'] == 'a toolkit which provides different styles of text emphasis'
    bold, italic = description['api_list']
    assert bold == {
        'name': 'bold',
        'description': 'make text bold',
        'parameters': [{'name': 'text', 'type': 'STRING', 'description': 'input text'}],
        'required': ['text'],
    }
    assert italic['parameters'][1] == {'name': 'times', 'type': 'NUMBER', 'description': 'how many times'}
    assert not Bold().is_toolkit and Bold().description['name'] == 'Bold'
    json_described = Bold(parser=JsonParser).description
    assert json_described['parameter_description'] == JsonParser.PARAMETER_DESCRIPTION


def test_a_given_description_is_reported_as_given() -> None:
    given = {'name': 'bold', 'description': 'a function used to make text bold', 'parameters': [], 'required': []}
    action = BaseAction(given)
    assert action.name == 'bold' and action.description == given
    assert action.description is not given  # a copy


# ---------------------------------------------------------------------- calling an action the 0.2 way


def test_calling_an_action_reads_its_input_with_its_parser() -> None:
    assert Bold()('hi').result == [{'type': 'text', 'content': '**hi**'}]  # plain text: the first parameter
    assert Bold()('{"text": "x"}').result == {'text': '**x**'}  # a JSON object: the arguments
    assert Bold()({'text': 'y'}).format_result() == '**y**'
    action = PhraseEmphasis()
    assert action('{"text": "a", "times": 2}', 'italic').format_result() == '**a**'
    tupled = PhraseEmphasis(parser=TupleParser)
    assert tupled('("b", 3)', 'italic').format_result() == '***b***'
    assert tupled(('c',), 'bold').format_result() == '**c**'
    failed = tupled('(1, 2, 3)', 'italic')
    assert failed.state == ActionStatusCode.ARGS_ERROR and 'at most 2 arguments' in failed.errmsg
    strict = Bold(parser=JsonParser)('not json')
    assert strict.state == ActionStatusCode.ARGS_ERROR and strict.errmsg == 'invalid json format: not json'
    assert strict.args == {'inputs': 'not json', 'name': 'run'}
    unknown = action('{"text": "a"}', 'underline')
    assert unknown.state == ActionStatusCode.API_ERROR and unknown.errmsg == 'invalid API: underline'
    wrong = action('{"text": "a", "times": "many"}', 'italic')
    assert wrong.state == ActionStatusCode.ARGS_ERROR and "'times'" in wrong.errmsg


def test_parsers_check_arguments_like_the_original() -> None:
    parser = JsonParser(PhraseEmphasis())
    assert parser.parse_inputs('```json\n{"text": "a"}\n```', 'bold') == {'text': 'a'}
    with pytest.raises(ParseError, match='unknown arguments'):
        parser.parse_inputs({'text': 'a', 'size': 1}, 'bold')
    with pytest.raises(ParseError, match='missing required arguments'):
        parser.parse_inputs({}, 'italic')
    assert JsonParser(PhraseEmphasis()).parse_outputs({'a': 1}) == [{'type': 'text', 'content': '{"a":1}'}]


# ---------------------------------------------------------------------- registry and builtin actions


def test_every_action_class_is_registered_by_name() -> None:
    assert {'BaseAction', 'InvalidAction', 'NoAction', 'FinishAction', 'Calculator'} - {
        *list_tools(),
        'BaseAction',
    } == set()
    assert 'PhraseEmphasis' in list_tools() and ('Bold', Bold) in list_tools(with_class=True)
    assert get_tool_cls('PhraseEmphasis') is PhraseEmphasis
    built = get_tool('Calculator', max_length=50)
    assert isinstance(built, Calculator) and built.max_length == 50
    with pytest.raises(KeyError, match="no tool class 'Nope'"):
        get_tool('Nope')
    assert TOOL_REGISTRY['Bold'] is Bold


def test_builtin_actions() -> None:
    assert FinishAction()('done').result == [{'type': 'text', 'content': 'done'}]
    assert FinishAction()('done').valid == ActionValidCode.FINISH
    invalid = InvalidAction()('no such tool')
    assert invalid.errmsg == 'no such tool' and invalid.valid == ActionValidCode.INVALID
    assert InvalidAction(err_msg='custom')().errmsg == 'custom'
    assert NoAction()().errmsg == 'Please follow the format' and not NoAction().enable


# ---------------------------------------------------------------------- ActionExecutor, the 0.2 way


def test_executor_02_api() -> None:
    executor = ExecutorFromOldPath(actions=[Bold(), PhraseEmphasis(), Calculator()])
    assert ExecutorFromOldPath is ActionExecutor
    info = executor.get_actions_info()
    assert [entry['name'] for entry in info] == ['Bold', 'PhraseEmphasis.bold', 'PhraseEmphasis.italic', 'Calculator']
    assert executor('PhraseEmphasis.italic', '{"text": "q"}').format_result() == '*q*'
    assert executor.execute('PhraseEmphasis.bold', {'text': 'q'}).format_result() == '**q**'  # the alias, new API
    assert executor('Bold', 'plain').format_result() == '**plain**'
    assert executor('Calculator', '{"expression": "6 * 7"}').format_result() == '42'
    assert executor('FinishAction', 'the end').format_result() == 'the end'
    assert executor('NoAction', None).errmsg == 'Please follow the format'
    missing = executor('Nope', 'what')
    assert missing.type == 'InvalidAction' and missing.state == ActionStatusCode.API_ERROR
    assert executor.action_names() == ['Bold', 'PhraseEmphasis', 'Calculator'] and executor.is_valid('Bold')
    executor.del_action('Bold')
    assert 'Bold' not in executor.actions and 'Bold' not in executor
    executor.add_action(Bold())
    executor.add_action(Bold())  # replaces the one of the same name
    assert executor.action_names() == ['PhraseEmphasis', 'Calculator', 'Bold']
    disabled = ActionExecutor([InvalidAction()])
    assert disabled.get_actions_info() == [] and disabled.action_names() == []
    assert disabled.action_names(only_enable=False) == ['InvalidAction']
    finishing = ActionExecutor([Bold()], finish_in_action=True)
    assert finishing.action_names() == ['Bold', 'FinishAction']
    single = ActionExecutor(Bold(), invalid_action=InvalidAction(err_msg='nope'))
    assert single('missing', None).errmsg == 'nope'


# ---------------------------------------------------------------------- ActionReturn and AgentReturn


def test_action_return_is_a_dataclass_read_both_ways() -> None:
    returned = ActionReturn({'x': 1}, None, 'calc', [{'type': 'text', 'content': '42'}])
    assert dataclasses.is_dataclass(returned) and returned.args == {'x': 1} and returned.type == 'calc'
    assert returned.result == [{'type': 'text', 'content': '42'}]  # 0.2: a list of items
    assert returned.result == {'text': '42'} and returned.result['text'] == '42'  # 0.1: one dict by type
    assert returned.result[0]['content'] == '42' and len(returned.result) == 1
    assert [item['type'] for item in returned.result] == ['text']
    plain = dataclasses.asdict(returned)
    assert plain['state'] == ActionStatusCode.SUCCESS and plain['result'] == {'text': '42'}
    assert dataclass2dict(returned)['state'] == 0 and dataclass2dict(returned)['valid'] == 0
    assert copy.deepcopy(returned) == returned
    returned.state = -1002  # assignments as 0.2 code made them
    returned.result = [{'type': 'image', 'content': 'a.png'}]
    assert returned.state is ActionStatusCode.API_ERROR and isinstance(returned.result, ResultItems)
    two = ResultItems([{'type': 'text', 'content': 'a'}, {'type': 'text', 'content': 'b'}])
    assert two == {'text': 'a\nb'} and len(two) == 2 and json.dumps(dict(two)) == '{"text": "a\\nb"}'
    with pytest.raises(ValueError, match="a dict with a 'type'"):
        ResultItems(['no type'])


def test_agent_return_and_status_codes_of_the_original() -> None:
    returned = AgentReturn()
    assert returned.state == AgentStatusCode.END and returned.actions == [] and returned.inner_steps == []
    assert AgentStatusCode.ANSWER_ING == 9
    assert dataclass2dict(AgentReturn(state=AgentStatusCode.PLUGIN_START))['state'] == 3


# ---------------------------------------------------------------------- interactive Python, version, rate limit


def test_ipython_interactive_keeps_variables_and_reports_like_02() -> None:
    from lagent.actions import IPythonInteractive
    from lagent.actions.ipython_interactive import ExecutionResult, Status

    with IPythonInteractive(timeout=10, max_out_len=100) as shell:
        assert shell.run('```python\nx = 20\n```').state == ActionStatusCode.SUCCESS
        assert shell('{"command": "print(x + 22)"}').format_result() == '42'
        assert shell.exec('x * 2') == ExecutionResult(Status.SUCCESS, value='40')
        failed = shell.exec('1 / 0')
        assert failed.status is Status.FAILURE and 'ZeroDivisionError' in failed.msg
        assert [tool.name for tool in shell.tools] == ['IPythonInteractive']


def test_ipython_manager_runs_batches_in_separate_sessions() -> None:
    from lagent.actions import IPythonInteractiveManager
    from lagent.actions.ipython_interactive import BatchIPythonInterpreter

    with IPythonInteractiveManager(timeout=10) as manager:
        results = manager(['a = 1', 'a = 2', 'print(a)', 'print(a)'], [0, 1, 0, 1])
        assert [r.state for r in results] == [ActionStatusCode.SUCCESS] * 4
        assert [results[2].format_result(), results[3].format_result()] == ['1', '2']
        assert manager('{"command": "print(a)", "session_id": 1}').format_result() == '2'
        with pytest.raises(ValueError, match='2 commands but 1 session ids'):
            manager(['1', '2'], [0])
    assert issubclass(BatchIPythonInterpreter, IPythonInteractiveManager)


def test_extract_code_and_escape_ansi() -> None:
    from lagent.actions.ipython_interactive import escape_ansi, extract_code

    assert extract_code('Run this:\n```python\nprint(1)\n```\nthanks') == 'print(1)\n'
    assert extract_code('just `x + 1` please') == 'x + 1'
    assert extract_code('{"code": "y = 2"}') == 'y = 2'
    assert extract_code('plain') == 'plain'
    assert escape_ansi('\x1b[31mred\x1b[0m and \x1b[2Kcleared') == 'red and cleared'


def test_version_info_and_token_bucket() -> None:
    import time

    import lagent
    from lagent.llms.base_api import TokenBucket
    from lagent.version import parse_version_info

    assert lagent.version_info == tuple(int(part) for part in lagent.__version__.split('.'))
    assert parse_version_info('2.0.0rc1') == (2, 0, 0, 0, 'rc', 1)
    assert parse_version_info('0.2.4', length=3) == (0, 2, 4, 0, 0)
    bucket = TokenBucket(rate=50)
    started = time.monotonic()
    for _ in range(75):  # a burst of 50, then 25 more at 50 per second
        bucket.get_token()
    assert 0.4 <= time.monotonic() - started < 3
    with pytest.raises(ValueError, match='positive'):
        TokenBucket(0)


def test_ppt_builds_a_deck_that_python_pptx_reads_back(tmp_path) -> None:
    from PIL import Image
    from pptx import Presentation

    from lagent.actions import PPT

    image = tmp_path / 'dot.png'
    Image.new('RGB', (40, 30), 'red').save(image)
    deck = tmp_path / 'out' / 'deck.pptx'
    with ActionExecutor([PPT()]) as executor:
        steps = [
            ('PPT.create_file', {'theme': 'Default', 'abs_location': str(deck)}),
            ('PPT.add_first_page', {'title': 'Results', 'subtitle': 'Q3'}),
            ('PPT.add_text_page', {'title': 'Findings', 'bullet_items': 'first[SPAN]second[SPAN]third'}),
            ('PPT.add_text_image_page', {'title': 'Chart', 'bullet_items': 'up', 'image': str(image)}),
            ('PPT.submit_file', {}),
        ]
        for name, arguments in steps:
            returned = executor(name, json.dumps(arguments))
            assert returned.state == ActionStatusCode.SUCCESS, (name, returned.errmsg)
        assert returned.format_result() == json.dumps(
            {'status': f'submitted. view ppt at {deck}'}, separators=(',', ':')
        )
        unknown = executor('PPT.create_file', json.dumps({'theme': 'Neon', 'abs_location': str(deck)}))
        assert unknown.state == ActionStatusCode.API_ERROR and "unknown theme 'Neon'" in unknown.errmsg
    slides = Presentation(str(deck)).slides
    texts = [[shape.text_frame.text for shape in slide.shapes if shape.has_text_frame] for slide in slides]
    assert texts == [['Results', 'Q3'], ['Findings', 'first\nsecond\nthird'], ['Chart', 'up']]
    assert any(shape.shape_type == 13 for shape in slides[2].shapes)  # a picture
