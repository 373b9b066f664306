"""LMDeployPipeline's images in lmdeploy's VL input format, checked with lmdeploy's own
input handling (``MultimodalProcessor``, which its pipeline and api_server run on every
request), and sent through the engine to a stand-in of lmdeploy's ``Pipeline``.

A vision encoder needs a vision-language model on a GPU; here lmdeploy is shown to accept
the inputs as images up to the point where it hands them to that encoder."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from lagent.images import ImagePolicy, find_images
from lagent.llms import LLMRequest
from lagent.llms.lmdeploy_pipeline import LMDeployPipeline, pipeline_inputs
from tests.fixtures.image_server import png_bytes
from tests.fixtures.lmdeploy_standin_pipeline import REPLY, standin  # noqa: F401  (the stand-in pipeline fixture)

multimodal = pytest.importorskip('lmdeploy.serve.processors.multimodal', reason='lmdeploy is not installed')
Processor = multimodal.MultimodalProcessor

RED, BLUE = png_bytes(), png_bytes(color=(20, 40, 230))


def data_uri(data: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(data).decode()


def pixels(image: Image.Image) -> bytes:
    return image.convert('RGB').tobytes()


def expected(png: bytes) -> bytes:
    return pixels(Image.open(io.BytesIO(png)))


CONVERSATION = [
    {'role': 'system', 'content': 'You describe pictures.'},
    {
        'role': 'user',
        'content': [
            {'type': 'text', 'text': 'Compare'},
            {'type': 'image_url', 'image_url': {'url': data_uri(RED)}},
            {'type': 'image_url', 'image_url': {'url': data_uri(BLUE)}},
        ],
    },
]


def test_messages_become_lmdeploy_image_data_parts_that_lmdeploy_parses_as_images():
    inputs, do_preprocess = pipeline_inputs(LLMRequest(messages=CONVERSATION))
    assert do_preprocess is True
    parts = inputs[1]['content']
    assert parts[0] == {'type': 'text', 'text': 'Compare'}
    assert [part['type'] for part in parts[1:]] == ['image_data', 'image_data']
    assert CONVERSATION[1]['content'][1]['type'] == 'image_url'  # the request itself is untouched
    processor = Processor(tokenizer=None, chat_template=None)
    assert processor._has_multimodal_input(inputs)
    assert Processor.format_prompts(inputs) == inputs  # accepted as OpenAI-format messages
    parsed = asyncio.run(Processor.async_parse_multimodal_item(inputs))
    images = [item for item in parsed[1]['content'] if item['type'] == 'image']
    assert [pixels(item['data']) for item in images] == [expected(RED), expected(BLUE)]
    assert parsed[0] == CONVERSATION[0] and parsed[1]['content'][0] == {'type': 'text', 'text': 'Compare'}


def test_a_rendered_prompt_becomes_lmdeploy_s_prompt_and_images_pair():
    conversation = [CONVERSATION[1]]
    request = LLMRequest(
        prompt='<|im_start|>user\nCompare<IMAGE_TOKEN><IMAGE_TOKEN>', images=tuple(find_images(conversation))
    )
    (prompt, images), do_preprocess = pipeline_inputs(request)
    assert do_preprocess is False and prompt == request.prompt
    assert [pixels(image) for image in images] == [expected(RED), expected(BLUE)]
    (formatted,) = Processor.format_prompts([(prompt, images)])  # lmdeploy's own reading of the pair
    (message,) = formatted
    assert message['content'][0] == {'type': 'text', 'text': prompt}
    assert [part['image_data']['data'] for part in message['content'][1:]] == images


def test_lmdeploy_sees_images_and_asks_for_a_vision_encoder():
    """Past this point lmdeploy runs the model's vision encoder (a vision-language model on a GPU)."""
    inputs, _ = pipeline_inputs(LLMRequest(messages=CONVERSATION))
    text_only = Processor(tokenizer=None, chat_template=None, vl_encoder=None)
    with pytest.raises(ValueError, match='Multimodal input is not supported by this model'):
        asyncio.run(text_only.get_prompt_input(inputs, do_preprocess=True))


def test_images_are_read_by_lagent_within_its_policy():
    local = [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': '/etc/hostname.png'}}]}]
    with pytest.raises(ValueError, match='reading local image files is not allowed'):
        pipeline_inputs(LLMRequest(messages=local), ImagePolicy.for_server())


def test_the_engine_sends_images_to_lmdeploy(standin):  # noqa: F811
    llm = LMDeployPipeline.from_pipeline(standin, max_new_tokens=3)
    assert llm.chat(CONVERSATION) == ''.join(REPLY[:3])
    call = standin.calls[-1]
    assert call['pre'] is True
    sent = [part for part in call['prompts'][1]['content'] if part['type'] == 'image_data']
    assert [pixels(part['image_data']['data']) for part in sent] == [expected(RED), expected(BLUE)]


def test_the_engine_with_a_template_sends_the_pair_with_lmdeploy_s_image_marker(standin):  # noqa: F811
    llm = LMDeployPipeline.from_pipeline(standin, meta_template='qwen2-vl', max_new_tokens=3)
    llm.chat(CONVERSATION)
    prompt, images = standin.calls[-1]['prompts']
    assert prompt == (
        '<|im_start|>system\nYou describe pictures.<|im_end|>\n'
        '<|im_start|>user\nCompare<IMAGE_TOKEN><IMAGE_TOKEN><|im_end|>\n<|im_start|>assistant\n'
    )
    assert standin.calls[-1]['pre'] is False
    assert [pixels(image) for image in images] == [expected(RED), expected(BLUE)]


async def test_the_async_engine_gets_the_images_too(standin):  # noqa: F811
    llm = LMDeployPipeline.from_pipeline(standin, max_new_tokens=3)
    assert await llm.achat(CONVERSATION) == ''.join(REPLY[:3])
    call = standin.calls[-1]
    assert call['kind'] == 'preprocess'
    assert [part['type'] for part in call['prompts'][1]['content']] == ['text', 'image_data', 'image_data']


def test_a_batch_with_images_goes_through_infer(standin):  # noqa: F811
    llm = LMDeployPipeline.from_pipeline(standin, max_new_tokens=3)
    assert llm.chat([CONVERSATION, CONVERSATION[:1]]) == [''.join(REPLY[:3])] * 2
    call = standin.calls[-1]
    assert call['kind'] == 'infer'
    assert call['prompts'][1] == CONVERSATION[:1]
    assert [part['type'] for part in call['prompts'][0][1]['content']] == ['text', 'image_data', 'image_data']
