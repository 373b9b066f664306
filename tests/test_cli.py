"""The ``lagent`` command, run end to end as a subprocess against the embedded
model (SmolLM2 in process) and a real llama.cpp server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lagent.bench.stats import percentile
from lagent.cli import build_parser
from tests.fixtures.servers import closed_port_url

pytestmark = pytest.mark.slow

QUICK = ['--max-new-tokens', '12', '--temperature', '0']
CHATML_TURN = '<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n'


def lagent(
    *args: str, stdin: str | None = None, timeout: float = 240, prelude: str = '', env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m lagent ARGS`` (after ``prelude`` Python code, if any)."""
    if prelude:
        command = [sys.executable, '-c', f'{prelude}\nimport sys\nfrom lagent.cli import main\nsys.exit(main())', *args]
    else:
        command = [sys.executable, '-m', 'lagent', *args]
    environment = {**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})}
    return subprocess.run(command, input=stdin or '', capture_output=True, text=True, timeout=timeout, env=environment)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('lagent: error: '), lines[0]
    assert 'Traceback' not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------------- help


@pytest.mark.parametrize('command', [[], ['chat'], ['agent'], ['bench']])
def test_help_of_every_command(command: list[str]) -> None:
    result = lagent(*command, '--help')
    assert result.returncode == 0
    assert result.stdout.startswith('usage: lagent')
    if command:
        assert '--backend' in result.stdout and '--config' in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name('lagent')
    result = subprocess.run([str(script), '--help'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and 'chat' in result.stdout and 'bench' in result.stdout


# ---------------------------------------------------------------------- chat, embedded model


def test_chat_one_shot_on_the_embedded_default() -> None:
    result = lagent('chat', *QUICK, 'Name a colour.')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert result.stderr == ''


def test_chat_debug_shows_the_rendered_prompt() -> None:
    result = lagent('chat', '--template', 'chatml', '--debug', *QUICK, 'Name a colour.')
    assert result.returncode == 0, result.stderr
    assert CHATML_TURN.format('Name a colour.') in result.stderr
    assert '"max_new_tokens": 12' in result.stderr
    assert result.stdout.strip()
    assert '<|im_start|>' not in result.stdout  # the prompt goes to stderr only


def test_chat_debug_without_template_shows_the_messages() -> None:
    result = lagent('chat', '--debug', *QUICK, 'Name a colour.')
    assert result.returncode == 0, result.stderr
    assert '"content": "Name a colour."' in result.stderr


def test_interactive_chat_keeps_history_until_reset() -> None:
    result = lagent(
        'chat',
        '--template',
        'chatml',
        '--debug',
        *QUICK,
        stdin='First question\n\nSecond\n/reset\nThird\n/exit\nNever read\n',
    )
    assert result.returncode == 0, result.stderr
    prompts = re.findall(r'--- rendered prompt \(LlamaCpp\) ---\n(.*?)\n--- end of prompt ---', result.stderr, re.S)
    assert len(prompts) == 3  # the blank line is skipped; nothing after /exit is read
    first, second, third = prompts
    assert first.endswith(CHATML_TURN.format('First question'))
    assert second.startswith(CHATML_TURN.format('First question'))  # the history, with the first reply
    assert second.endswith(CHATML_TURN.format('Second'))
    assert third == CHATML_TURN.format('Third')  # after /reset
    assert 'Never read' not in result.stderr
    assert len([line for line in result.stdout.splitlines() if line.strip()]) >= 3


def test_chat_with_a_jinja_template_file(tmp_path: Path) -> None:
    template = tmp_path / 'plain.jinja'
    template.write_text('{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ')
    result = lagent('chat', '--template', str(template), '--debug', *QUICK, 'Name a colour.')
    assert result.returncode == 0, result.stderr
    assert (
        '--- rendered prompt (LlamaCpp) ---\n[user] Name a colour.\n[assistant] \n--- end of prompt ---'
        in result.stderr
    )


# ---------------------------------------------------------------------- chat, llama.cpp server


@pytest.mark.parametrize('backend', ['openai', 'lmdeploy-client'])
def test_chat_against_the_llamacpp_server(llamacpp_url: str, backend: str) -> None:
    result = lagent('chat', '--backend', backend, '--url', f'{llamacpp_url}/v1', '--model', 'smollm2', *QUICK, 'Hi!')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_chat_from_a_yaml_config(llamacpp_url: str, tmp_path: Path) -> None:
    config = tmp_path / 'llm.yaml'
    config.write_text(
        f'type: OpenAICompatible\nurl: {llamacpp_url}/v1\nmodel_name: smollm2\nmeta_template: chatml\nmax_new_tokens: 4\n'
    )
    result = lagent('chat', '--config', str(config), '--debug', '--max-new-tokens', '6', 'Hi!')
    assert result.returncode == 0, result.stderr
    assert CHATML_TURN.format('Hi!') in result.stderr
    assert '"max_new_tokens": 6' in result.stderr  # the command line wins over the file


def test_chat_debug_shows_the_http_request_body_without_the_key(llamacpp_url: str) -> None:
    result = lagent(
        'chat', '--backend', 'openai', '--url', llamacpp_url, '--model', 'smollm2', '--debug', *QUICK, 'Hi!',
        env={'LAGENT_API_KEY': 'sk-secret-1234'},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = re.search(r'POST \S+/v1/chat/completions (\{.*\})', result.stderr)
    assert body is not None, result.stderr
    assert json.loads(body.group(1))['messages'] == [{'role': 'user', 'content': 'Hi!'}]
    assert 'sk-secret-1234' not in result.stderr


# ---------------------------------------------------------------------- user errors


def test_unknown_backend() -> None:
    assert_one_line_error(lagent('chat', '--backend', 'nope', 'hi'), "unknown engine 'nope'", 'lmdeploy-client')


def test_unreachable_url() -> None:
    url = f'{closed_port_url()}/v1'
    assert_one_line_error(lagent('chat', '--backend', 'openai', '--url', url, '--model', 'm', 'hi'))


def test_interactive_chat_reports_each_failed_turn_and_goes_on() -> None:
    url = f'{closed_port_url()}/v1'
    result = lagent('chat', '--backend', 'openai', '--url', url, '--model', 'm', stdin='first\nsecond\n')
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith('lagent: error: ') for line in lines)
    assert 'Traceback' not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    assert_one_line_error(lagent('chat', '--config', str(tmp_path / 'absent.yaml'), 'hi'), 'absent.yaml')


def test_bad_config_key(tmp_path: Path) -> None:
    config = tmp_path / 'llm.json'
    config.write_text(json.dumps({'type': 'LlamaCpp', 'n_gpu_layerz': 3}))
    assert_one_line_error(lagent('chat', '--config', str(config), 'hi'), "'n_gpu_layerz'")


def test_invalid_generation_parameter() -> None:
    assert_one_line_error(lagent('chat', '--temperature', '-1', 'hi'), 'temperature')


def test_url_for_an_in_process_engine() -> None:
    assert_one_line_error(lagent('chat', '--url', 'http://127.0.0.1:1', 'hi'), '--url')


def test_missing_extra_names_it() -> None:
    result = lagent('chat', 'hi', prelude="import sys; sys.modules['llama_cpp'] = None")
    assert_one_line_error(result, 'pip install "lagent[llamacpp]"')


def test_bad_dataset_file(tmp_path: Path) -> None:
    dataset = tmp_path / 'data.jsonl'
    dataset.write_text('{"prompt": "fine"}\n{"oops": 1}\n')
    assert_one_line_error(lagent('bench', '--dataset', str(dataset), '--no-progress'), 'data.jsonl:2')


# ---------------------------------------------------------------------- bench


def _summary_rows(stdout: str) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(':')
        if sep and not line.startswith('lagent bench'):
            rows[name.strip()] = value.strip()
    return rows


def _check_summary_matches_records(stdout: str, data: dict) -> None:
    rows = _summary_rows(stdout)
    records = data['records']
    done = [r for r in records if r['error'] is None]
    duration = data['summary']['duration_s']
    assert int(rows['Requests sent']) == len(records)
    assert int(rows['Completed']) == len(done)
    assert int(rows['Errors']) == len(records) - len(done)
    assert float(rows['Duration (s)']) == pytest.approx(duration, abs=5e-4)
    tokens = sum(r['output_tokens'] for r in done)
    assert rows['Output tokens'].startswith(f'{tokens} (from ')
    assert float(rows['Output tokens/s']) == pytest.approx(tokens / duration, rel=1e-3, abs=5e-4)
    assert float(rows['Requests/s']) == pytest.approx(len(done) / duration, rel=1e-3, abs=5e-4)
    samples = {
        'TTFT': [r['ttft_s'] for r in done if r['ttft_s'] is not None],
        'TPOT': [r['tpot_s'] for r in done if r['tpot_s'] is not None],
        'ITL': [gap for r in done for gap in r['itl_s']],
        'Latency': [r['latency_s'] for r in done],
    }
    for label, values in samples.items():
        assert values, label
        for key, q in (('p50', 50), ('p90', 90), ('p99', 99)):
            assert float(rows[f'{label} {key} (ms)']) == pytest.approx(percentile(values, q) * 1000, abs=6e-4)
        assert float(rows[f'{label} mean (ms)']) == pytest.approx(sum(values) / len(values) * 1000, abs=6e-4)


def _check_records(data: dict, count: int) -> None:
    records = data['records']
    assert [r['index'] for r in records] == list(range(count))
    for r in records:
        assert r['error'] is None, r['error']
        assert r['ttft_s'] > 0 and r['latency_s'] >= r['ttft_s']
        assert r['output_tokens'] >= 1 and r['output_tokens_source'] in ('usage', 'tokenizer')
        assert all(gap >= 0 for gap in r['itl_s']) and len(r['itl_s']) == len(r['event_s']) - 1
        assert r['start_s'] >= r['scheduled_s'] >= 0
        assert r['finish_reason'] in ('stop', 'length')


def test_bench_against_the_llamacpp_server(llamacpp_url: str, smollm2_path: Path, tmp_path: Path) -> None:
    # one request at a time: llama.cpp's server cuts a running request short when another arrives;
    # it reports no usage in streams, so the model's own tokenizer counts the tokens
    out, figure = tmp_path / 'bench.json', tmp_path / 'bench.png'
    result = lagent(
        'bench', '--backend', 'openai', '--url', f'{llamacpp_url}/v1', '--model', 'smollm2',
        '--synthetic', '--input-len', '16', '--output-len', '8', '--num-requests', '5', '--request-rate', '20',
        '--seed', '3', '--temperature', '0', '--json', str(out), '--plot', str(figure),
        '--tokenizer', str(smollm2_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    _check_records(data, 5)
    assert {r['output_tokens_source'] for r in data['records']} == {'tokenizer'}
    assert data['settings']['concurrency'] == 1 and data['settings']['request_rate'] == 20.0
    assert all(r['output_tokens'] <= 8 for r in data['records'])
    _check_summary_matches_records(result.stdout, data)
    assert figure.read_bytes()[:4] == b'\x89PNG'
    assert '5/5' in result.stderr  # the progress bar


def test_bench_on_the_embedded_model_with_a_dataset(tmp_path: Path) -> None:
    dataset, out = tmp_path / 'data.jsonl', tmp_path / 'bench.json'
    lines = [{'prompt': 'Name a colour.', 'max_new_tokens': 6}, {'messages': [{'role': 'user', 'content': 'Hi'}]}]
    dataset.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    result = lagent(
        'bench', '--dataset', str(dataset), '--max-new-tokens', '5', '--temperature', '0', '--concurrency', '2',
        '--no-progress', '--json', str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    _check_records(data, 2)
    assert data['records'][0]['output_tokens'] <= 6 and data['records'][1]['output_tokens'] <= 5
    _check_summary_matches_records(result.stdout, data)
    assert result.stderr == ''


def test_bench_where_every_request_fails_exits_non_zero(tmp_path: Path) -> None:
    url = f'{closed_port_url()}/v1'
    result = lagent(
        'bench', '--backend', 'openai', '--url', url, '--model', 'm', '--synthetic', '--num-requests', '2',
        '--no-progress', '--json', str(tmp_path / 'out.json'),
    )  # fmt: skip
    assert result.returncode == 1
    assert_one_line_error(result, 'all 2 requests failed')
    rows = _summary_rows(result.stdout)
    assert rows['Errors'] == '2' and rows['TTFT p50 (ms)'] == '-'
    data = json.loads((tmp_path / 'out.json').read_text())
    assert all(r['error'] for r in data['records'])


# ---------------------------------------------------------------------- agent

STEP_LINE = re.compile(r'^\[turn \d+\] (tool call: \w+\(.*\)|tool result: |tool error \(\w+\): )')


def _check_agent_output(stdout: str) -> list[str]:
    lines = stdout.rstrip('\n').splitlines()
    assert lines, 'the agent showed nothing'
    finals = [
        i for i, line in enumerate(lines) if re.match(r'^\[(final answer|stopped \(SESSION_OUT_OF_LIMIT\))\]', line)
    ]
    assert len(finals) == 1, stdout  # the last step; the answer may go on over more lines
    steps = [line for line in lines if STEP_LINE.match(line)]
    assert all(lines.index(step) < finals[0] for step in steps), stdout
    return steps


def test_agent_against_the_llamacpp_server_calls_the_calculator(llamacpp_url: str) -> None:
    result = lagent(
        'agent', '--backend', 'openai', '--url', f'{llamacpp_url}/v1', '--model', 'smollm2', '--tools', 'calculator',
        '--max-turn', '2', '--temperature', '0', '--max-new-tokens', '64', 'What is 37 * 12?',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = _check_agent_output(result.stdout)
    assert steps[0].startswith('[turn 1] tool call: Calculator(')
    assert steps[1] == '[turn 1] tool result: 444'


def test_agent_on_the_embedded_model() -> None:
    result = lagent('agent', '--max-turn', '2', '--temperature', '0', '--max-new-tokens', '64', 'What is 37 * 12?')
    assert result.returncode == 0, result.stderr
    _check_agent_output(result.stdout)


def test_agent_unknown_tool() -> None:
    assert_one_line_error(lagent('agent', '--tools', 'calculator,browser', 'hi'), "unknown tool 'browser'")


# ---------------------------------------------------------------------- rough edges


@pytest.mark.parametrize(
    ('backend', 'missing'),
    [('openai', '--url'), ('lmdeploy-client', '--url'), ('hf', '--model'), ('triton', '--url and --model')],
)
def test_a_missing_required_option_is_one_line(backend: str, missing: str) -> None:
    assert_one_line_error(lagent('chat', '--backend', backend, 'Hi'), f'needs {missing}')


def test_version_and_system() -> None:
    version = lagent('--version')
    assert version.returncode == 0 and re.fullmatch(r'lagent \d+\.\d+\.\d+\s*', version.stdout)
    system = lagent('--system')
    assert system.returncode == 0
    for line in ('python 3.', 'torch: ', 'engines:'):
        assert line in system.stdout
    assert re.search(r'^  llamacpp +LlamaCpp +ready \(llama-cpp-python ', system.stdout, re.M)
    assert re.search(r'^  lmdeploy-pipeline +LMDeployPipeline +installed, but needs a CUDA device', system.stdout, re.M)


@pytest.mark.parametrize('option', ['--json', '--plot'])
def test_bench_checks_output_paths_before_the_run(tmp_path: Path, option: str) -> None:
    missing_dir = tmp_path / 'no' / 'such' / 'out.file'
    result = lagent('bench', '--synthetic', '--num-requests', '1', option, str(missing_dir), timeout=60)
    assert_one_line_error(result, 'cannot write', 'no directory')
    result = lagent('bench', '--synthetic', '--num-requests', '1', option, str(tmp_path), timeout=60)
    assert_one_line_error(result, 'is a directory')


def test_bench_length_options_never_silently_override_each_other(tmp_path: Path) -> None:
    result = lagent('bench', '--synthetic', '--output-len', '5', '--max-new-tokens', '6', timeout=60)
    assert_one_line_error(result, '--output-len 5 and --max-new-tokens 6 disagree')
    dataset = tmp_path / 'd.jsonl'
    dataset.write_text('{"prompt": "hi"}\n')
    result = lagent('bench', '--dataset', str(dataset), '--input-len', '3', timeout=60)
    assert_one_line_error(result, '--input-len applies to --synthetic only')


def test_bench_help_shows_the_defaults() -> None:
    bench = build_parser()._subparsers._group_actions[0].choices['bench']
    for action in bench._actions:
        if action.option_strings[0] in ('--input-len', '--output-len', '--num-requests', '--concurrency', '--seed'):
            assert 'default' in action.help, action.option_strings


@pytest.mark.parametrize(
    ('template', 'shown', 'turns'),
    [
        (None, 'messages (LlamaCpp', 2),
        ('chatml', 'rendered prompt (LlamaCpp)', 1),
    ],  # one tool forces a first call natively
)
def test_agent_debug_shows_every_request(template: str | None, shown: str, turns: int) -> None:
    options = ['--template', template] if template else []
    result = lagent('agent', '--debug', '--tools', 'calculator', '--max-turn', '2', *options, 'What is 3 * 4?')
    requests = result.stderr.count(f'--- {shown}')
    assert requests >= turns, result.stderr
    assert result.stderr.count('--- generation settings ---') == requests
    assert '3 * 4' in result.stderr
