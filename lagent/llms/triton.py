"""``TritonClient``: text generation on a Triton Inference Server over gRPC.

Two text-in/text-out contracts are spoken (``protocol``); the tensor names
below are the defaults, each can be renamed with ``input_names`` /
``output_names`` (map a role to ``None`` to never send it):

``'trtllm'`` — the TensorRT-LLM ``ensemble`` model
    inputs ``text_input`` (BYTES), ``max_tokens`` (INT32), ``stream`` (BOOL),
    ``stop_words`` (BYTES, one element per word), ``temperature``, ``top_p``,
    ``repetition_penalty`` (FP32) and ``top_k`` (INT32), each ``[1, 1]`` on a
    batching model; output ``text_output``. Streamed responses carry the new
    text only. A non-streamed response starts with the prompt (the ensemble
    echoes it); that echo is stripped here.

``'vllm'`` — the vLLM backend
    inputs ``text_input``, ``stream``, ``sampling_parameters`` (a JSON string
    of vLLM ``SamplingParams``) and ``exclude_input_in_output`` (always sent
    as true, so no echo); output ``text_output``, new text when streaming and
    the whole reply otherwise.

Datatypes and ranks are taken from the model's metadata, which is read once,
at construction, together with the model's config (decoupled or not) — that
is also where an unreachable server, a model that is not ready and a tensor
name the model does not have are reported.

Decoupled models are streamed (gRPC ``ModelStreamInfer``); a request ends on
the ``triton_final_response`` flag (or, on the async path, where
``tritonclient.grpc.aio`` cannot ask for empty final responses, when the
server closes the stream after the request completes), on an error response,
or on ``idle_timeout`` without any response — never by hanging. Other models
are asked with plain ``ModelInfer``. Token pieces are bytes and may split a
UTF-8 character; they are decoded incrementally.

Neither contract reports a finish reason: a streamed reply that used all
``max_new_tokens`` responses (both backends send one per generated token) is
reported as ``'length'``, other streamed replies as ``'stop'``, and a
non-streamed reply's reason is unknown (``None``). No usage is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, cast

from lagent._optional import import_optional
from lagent.errors import (
    EngineUnavailableError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    StreamError,
    status_error,
)
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.llms.streaming import Utf8StreamDecoder
from lagent.prompts import ChatTemplate
from lagent.schema import Chunk, GenerationParams

__all__ = ['DEFAULT_INPUT_NAMES', 'DEFAULT_OUTPUT_NAMES', 'TritonClient']

DEFAULT_INPUT_NAMES: dict[str, dict[str, str]] = {
    'trtllm': {
        'text': 'text_input',
        'max_tokens': 'max_tokens',
        'stream': 'stream',
        'stop_words': 'stop_words',
        'temperature': 'temperature',
        'top_p': 'top_p',
        'top_k': 'top_k',
        'repetition_penalty': 'repetition_penalty',
    },
    'vllm': {
        'text': 'text_input',
        'stream': 'stream',
        'sampling_parameters': 'sampling_parameters',
        'exclude_input_in_output': 'exclude_input_in_output',
    },
}
"""Input tensor name of each role, per protocol."""

DEFAULT_OUTPUT_NAMES: dict[str, str] = {'text': 'text_output'}
"""Output tensor name of each role (both protocols)."""

# gRPC status -> the HTTP status our error hierarchy is keyed on (the usual gRPC/HTTP mapping)
_HTTP_STATUS = {
    'INVALID_ARGUMENT': 400,
    'FAILED_PRECONDITION': 400,
    'OUT_OF_RANGE': 400,
    'UNAUTHENTICATED': 401,
    'PERMISSION_DENIED': 403,
    'NOT_FOUND': 404,
    'ALREADY_EXISTS': 409,
    'RESOURCE_EXHAUSTED': 429,
    'UNIMPLEMENTED': 501,
}


@dataclass(frozen=True)
class _Tensor:
    """An input tensor of the model, as its metadata describes it."""

    name: str
    datatype: str
    rank: int


class TritonClient(BaseLLM):
    """A model served by Triton Inference Server (TensorRT-LLM ensemble or vLLM backend).

    Prompts are rendered here (``meta_template`` or ``chat_template``) and sent
    as text; stop words are sent to the server and also enforced on the client.

    Args:
        tritonserver_addr: The server's gRPC address, ``host:port``.
        model_name: The model to ask (``'ensemble'`` for TensorRT-LLM, the
            vLLM model's name otherwise).
        meta_template: Role dicts of a meta_template, or a registered template name.
        chat_template: A Jinja chat template, instead of a meta_template.
        session_len: Kept for lagent compatibility; the server enforces its own
            context length.
        protocol: ``'trtllm'`` or ``'vllm'`` (see the module docstring).
        input_names: Tensor names replacing the defaults of
            :data:`DEFAULT_INPUT_NAMES`, by role; ``None`` never sends that role.
        output_names: Tensor names replacing :data:`DEFAULT_OUTPUT_NAMES`, by role.
        connect_timeout: Seconds each construction-time check may take.
        idle_timeout: Seconds to wait for the next response of a request.
        **gen_params: Generation defaults (``max_new_tokens``, ``top_p``,
            ``top_k``, ``temperature``, ``repetition_penalty``, ``stop_words``...).
            ``session_id``, ``request_id``, ``sequence_start`` and ``sequence_end``
            are accepted; only ``request_id`` is sent (every request is a whole
            sequence).

    Raises:
        MissingExtraError: ``tritonclient[grpc]`` is not installed.
        LLMConnectionError: The server cannot be reached.
        EngineUnavailableError: The model is unknown or not ready; the message
            names the models that are.
        ValueError: An unknown protocol or role, or a tensor name the model does
            not have (the message names the model's real tensors).
    """

    batch_concurrency: ClassVar[int] = 8

    def __init__(
        self,
        tritonserver_addr: str,
        model_name: str,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        session_len: int = 32768,
        protocol: str = 'trtllm',
        input_names: Mapping[str, str | None] | None = None,
        output_names: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        **gen_params: Any,
    ):
        if protocol not in DEFAULT_INPUT_NAMES:
            raise ValueError(f'unknown protocol {protocol!r}; choose one of {sorted(DEFAULT_INPUT_NAMES)}')
        super().__init__(model_name, meta_template, chat_template=chat_template, **gen_params)
        self.url = tritonserver_addr.split('://', 1)[-1]
        self.model_name = model_name
        self.protocol = protocol
        self.session_len = session_len
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._grpc = import_optional('tritonclient.grpc', package='tritonclient[grpc]', extra='triton')
        self._idle_clients: queue.SimpleQueue[Any] = queue.SimpleQueue()
        roles = _merge_names(DEFAULT_INPUT_NAMES[protocol], input_names, 'input')
        outputs = _merge_names(DEFAULT_OUTPUT_NAMES, output_names, 'output')
        with self._client() as client:
            self.decoupled, self._inputs, self._output = self._inspect_model(client, roles, outputs['text'])

    def __repr__(self) -> str:
        return f'TritonClient(url={self.url!r}, model_name={self.model_name!r}, protocol={self.protocol!r})'

    # ------------------------------------------------------------------ construction checks

    def _inspect_model(
        self, client: Any, roles: dict[str, str | None], output: str
    ) -> tuple[bool, dict[str, _Tensor], str]:
        """Check the server, the model and the tensor names once; return what requests need."""
        where = f'Triton at {self.url}'
        try:
            client.is_server_live(client_timeout=self.connect_timeout)
        except self._grpc.InferenceServerException as exc:
            raise LLMConnectionError(f'cannot reach {where}: {exc.message()}') from exc
        with _triton_errors():
            if not client.is_model_ready(self.model_name, client_timeout=self.connect_timeout):
                ready = ', '.join(_ready_models(client, self.connect_timeout)) or 'none reported'
                raise EngineUnavailableError(
                    f'model {self.model_name!r} is not ready on {where}; ready models: {ready}'
                )
            metadata = client.get_model_metadata(self.model_name, as_json=True, client_timeout=self.connect_timeout)
            config = client.get_model_config(self.model_name, as_json=True, client_timeout=self.connect_timeout)
        declared = {item['name']: item for item in metadata.get('inputs', [])}
        missing = sorted(name for name in roles.values() if name is not None and name not in declared)
        if missing:
            raise ValueError(
                f'model {self.model_name!r} has no input {", ".join(map(repr, missing))} '
                f'(protocol {self.protocol!r}); its inputs are: {", ".join(declared)}. '
                'Rename them with input_names={role: tensor_name}.'
            )
        output_names = [item['name'] for item in metadata.get('outputs', [])]
        if output not in output_names:
            raise ValueError(
                f'model {self.model_name!r} has no output {output!r}; its outputs are: {", ".join(output_names)}. '
                "Rename it with output_names={'text': tensor_name}."
            )
        tensors = {
            role: _Tensor(name, declared[name]['datatype'], len(declared[name]['shape']))
            for role, name in roles.items()
            if name is not None
        }
        decoupled = bool(config.get('config', {}).get('model_transaction_policy', {}).get('decoupled', False))
        return decoupled, tensors, output

    # ------------------------------------------------------------------ requests

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        """Lend a sync client; each holds at most one gRPC stream, so concurrent requests use several."""
        try:
            client = self._idle_clients.get_nowait()
        except queue.Empty:
            client = self._grpc.InferenceServerClient(self.url)
        try:
            yield client
        finally:
            self._idle_clients.put(client)

    def _infer_inputs(self, prompt: str, params: GenerationParams) -> list[Any]:
        values = _protocol_values(self.protocol, prompt, params, stream=self.decoupled)
        return [
            _infer_input(self._grpc, self._inputs[role], value)
            for role, value in values.items()
            if role in self._inputs
        ]

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        prompt = cast(str, request.prompt)
        inputs = self._infer_inputs(prompt, params)
        reply = _Reply(self._output, params.max_new_tokens)
        with self._client() as client, _triton_errors():
            if not self.decoupled:
                result = client.infer(
                    self.model_name,
                    inputs,
                    request_id=params.request_id or '',
                    client_timeout=params.timeout or self.idle_timeout,
                )
                yield reply.whole(result, prompt)
                return
            responses: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
            client.start_stream(lambda result, error: responses.put((result, error)), stream_timeout=params.timeout)
            try:
                client.async_stream_infer(
                    self.model_name, inputs, request_id=params.request_id or '', enable_empty_final_response=True
                )
                while not reply.finished:
                    try:
                        result, error = responses.get(timeout=self.idle_timeout)
                    except queue.Empty:
                        raise self._idle_error() from None
                    chunk = reply.take(result, error)
                    if chunk is not None:
                        yield chunk
            finally:
                client.stop_stream(cancel_requests=not reply.finished)

    async def _astream(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        aio = import_optional('tritonclient.grpc.aio', package='tritonclient[grpc]', extra='triton')
        prompt = cast(str, request.prompt)
        inputs = self._infer_inputs(prompt, params)
        reply = _Reply(self._output, params.max_new_tokens)
        with _triton_errors():
            async with aio.InferenceServerClient(self.url) as client:
                if not self.decoupled:
                    result = await client.infer(
                        self.model_name,
                        inputs,
                        request_id=params.request_id or '',
                        client_timeout=params.timeout or self.idle_timeout,
                    )
                    yield reply.whole(result, prompt)
                    return

                async def one_request() -> AsyncIterator[dict[str, Any]]:
                    yield {'model_name': self.model_name, 'inputs': inputs, 'request_id': params.request_id or ''}

                responses = client.stream_infer(one_request(), stream_timeout=params.timeout)
                try:
                    while not reply.finished:
                        try:
                            result, error = await asyncio.wait_for(responses.__anext__(), self.idle_timeout)
                        except StopAsyncIteration:  # the server closes the stream once the request is complete
                            chunk = reply.end()
                        except asyncio.TimeoutError:
                            raise self._idle_error() from None
                        else:
                            chunk = reply.take(result, error)
                        if chunk is not None:
                            yield chunk
                finally:
                    if not reply.finished:
                        responses.cancel()

    def _idle_error(self) -> LLMTimeoutError:
        return LLMTimeoutError(
            f'model {self.model_name!r} on Triton at {self.url} sent nothing for {self.idle_timeout}s '
            '(idle_timeout) and never signalled the end of the reply'
        )

    def close(self) -> None:
        """Close the gRPC connections this client opened."""
        while True:
            try:
                self._idle_clients.get_nowait().close()
            except queue.Empty:
                return


class _Reply:
    """Turns the responses to one request into chunks (shared by the sync and async paths)."""

    __slots__ = ('_decoder', '_limit', '_output', '_responses', 'finished')

    def __init__(self, output: str, max_new_tokens: int):
        self._output = output
        self._limit = max_new_tokens
        self._decoder = Utf8StreamDecoder()
        self._responses = 0
        self.finished = False

    def take(self, result: Any, error: BaseException | None) -> Chunk | None:
        """Take one streamed response (or the error the server sent instead)."""
        if error is not None:
            raise error
        text = self._text(result)
        final = result.get_response().parameters.get('triton_final_response')
        if final is not None and final.bool_param:
            return self.end(text)
        return Chunk(text=text) if text else None

    def end(self, text: str = '') -> Chunk:
        """The request is complete."""
        self.finished = True
        reason = 'length' if self._responses >= self._limit else 'stop'
        return Chunk(text=text + self._decoder.flush(), finish_reason=reason)

    def whole(self, result: Any, prompt: str) -> Chunk:
        """The one response of a non-streamed request, without an echoed prompt."""
        text = self._text(result) + self._decoder.flush()
        self.finished = True
        return Chunk(text=text.removeprefix(prompt))

    def _text(self, result: Any) -> str:
        array = result.as_numpy(self._output)
        if array is None or not array.size:
            return ''
        self._responses += 1
        return self._decoder.feed(array.reshape(-1)[0])


def _merge_names(
    defaults: Mapping[str, str], overrides: Mapping[str, str | None] | None, kind: str
) -> dict[str, str | None]:
    unknown = sorted(set(overrides or ()) - set(defaults))
    if unknown:
        raise ValueError(f'unknown {kind} role(s) {unknown}; the roles are: {", ".join(defaults)}')
    return {**defaults, **(overrides or {})}


def _protocol_values(protocol: str, prompt: str, params: GenerationParams, *, stream: bool) -> dict[str, Any]:
    """The value of each input role for one request."""
    if protocol == 'vllm':
        sampling = {
            'max_tokens': params.max_new_tokens,
            'temperature': params.temperature,
            'top_p': params.top_p,
            'top_k': params.top_k or -1,
            'repetition_penalty': params.repetition_penalty,
            'stop': list(params.stop_words),
            'ignore_eos': params.ignore_eos,
        }
        optional = {
            'seed': params.seed,
            'min_tokens': params.min_new_tokens,
            'skip_special_tokens': params.skip_special_tokens,
        }
        sampling.update({key: value for key, value in optional.items() if value is not None})
        return {
            'text': prompt,
            'stream': stream,
            'sampling_parameters': json.dumps(sampling),
            'exclude_input_in_output': True,
        }
    values: dict[str, Any] = {
        'text': prompt,
        'max_tokens': params.max_new_tokens,
        'stream': stream,
        'temperature': params.temperature,
        'top_p': params.top_p,
        'top_k': 1 if params.greedy else params.top_k or 0,
        'repetition_penalty': params.repetition_penalty,
    }
    if params.stop_words:
        values['stop_words'] = list(params.stop_words)
    return values


def _infer_input(grpc: ModuleType, tensor: _Tensor, value: Any) -> Any:
    """One input tensor: ``value`` (a list fills the last dimension) shaped to the tensor's rank."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    items = value if isinstance(value, list) else [value]
    shape = [1] * (tensor.rank - 1) + [len(items)]
    if tensor.datatype == 'BYTES':
        array = np.array([item.encode() if isinstance(item, str) else item for item in items], dtype=np.object_)
    else:
        array = np.array(items, dtype=triton_to_np_dtype(tensor.datatype))
    infer_input = grpc.InferInput(tensor.name, shape, tensor.datatype)
    infer_input.set_data_from_numpy(array.reshape(shape))
    return infer_input


def _ready_models(client: Any, timeout: float) -> list[str]:
    """Names of the models the server reports ready: its repository index, or, where
    that lists none (models loaded from config content), its statistics."""
    with contextlib.suppress(Exception):
        index = client.get_model_repository_index(as_json=True, client_timeout=timeout).get('models', [])
        names = sorted(model['name'] for model in index if model.get('state') == 'READY')
        if names:
            return names
    with contextlib.suppress(Exception):
        stats = client.get_inference_statistics(as_json=True, client_timeout=timeout).get('model_stats', [])
        return sorted({model['name'] for model in stats})
    return []


@contextlib.contextmanager
def _triton_errors() -> Iterator[None]:
    """Convert tritonclient and gRPC errors into lagent errors, keeping the server's message."""
    import grpc
    from tritonclient.utils import InferenceServerException

    try:
        yield
    except InferenceServerException as exc:
        raise _lagent_error(exc.status(), exc.message() or str(exc)) from exc
    except grpc.RpcError as exc:
        raise _lagent_error(exc.code().name, exc.details() or str(exc)) from exc


def _lagent_error(status: str | None, message: str) -> LLMError:
    if status is None:  # an error response inside a stream
        return StreamError(f'Triton reported an error: {message}', body=message)
    code = status.removeprefix('StatusCode.')
    if code == 'DEADLINE_EXCEEDED':
        return LLMTimeoutError(f'Triton request timed out: {message}')
    if code in {'UNAVAILABLE', 'CANCELLED'}:
        return LLMConnectionError(f'Triton connection failed ({code}): {message}')
    return status_error(_HTTP_STATUS.get(code, 500), f'Triton {code}: {message}', body=message)
