"""LMDeployPipeline's images, on lmdeploy's own vision-language pipeline with the CPU engine.

Two vision-language model folders without weights (``tests/fixtures/lmdeploy_cpu_vl_models.py``)
make lmdeploy build its vision-language pipeline (``VLAsyncEngine``): a LLaVA-1.5 and a
Qwen2-VL. lmdeploy reads the images lagent hands it, turns them into pixel values with the
model's image processor, tokenizes the prompt with each image's tokens in place, and its
engine, the CPU engine, runs lmdeploy's input processor of the model and records what arrived
(``tests/fixtures/lmdeploy_cpu_vision.py``). The tests compare those pixel values with what the
model's image processor makes of the images sent, and the prompt with where the images belong.
lmdeploy's PyTorch engine would run the vision encoder next, on the GPU; the CPU engine
answers from a script instead.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip('lmdeploy', reason='lmdeploy is not installed')
torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from PIL import Image  # noqa: E402

from lagent.errors import LLMError, RequestError  # noqa: E402
from lagent.images import ImageError, ImagePolicy, find_images  # noqa: E402
from lagent.llms import LLMRequest  # noqa: E402
from lagent.llms.lmdeploy_client import LMDeployClient  # noqa: E402
from lagent.llms.lmdeploy_pipeline import LMDeployPipeline, pipeline_inputs  # noqa: E402
from tests.fixtures.image_server import image_server, png_bytes  # noqa: E402
from tests.fixtures.lmdeploy_cpu import CPUEngines, cpu_engine, model_folder  # noqa: E402
from tests.fixtures.lmdeploy_cpu_server import CPUServer, api_server  # noqa: E402
from tests.fixtures.lmdeploy_cpu_sources import digest_reply  # noqa: E402
from tests.fixtures.lmdeploy_cpu_vision import accept_images, input_processor, pixel_digest  # noqa: E402

Processor = pytest.importorskip('lmdeploy.serve.processors.multimodal').MultimodalProcessor

RED, BLUE = png_bytes(), png_bytes((100, 50), color=(20, 40, 230))
MAX_NEW_TOKENS = 64
"""Enough for the script's whole reply."""


def data_uri(data: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(data).decode()


def picture(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert('RGB')


CONVERSATION = [
    {'role': 'system', 'content': 'You describe pictures.'},
    {
        'role': 'user',
        'content': [
            {'type': 'text', 'text': 'Compare'},
            {'type': 'image_url', 'image_url': {'url': data_uri(RED)}},
            {'type': 'text', 'text': ' with'},
            {'type': 'image_url', 'image_url': {'url': data_uri(BLUE)}},
        ],
    },
]
TEXT_ONLY = [{'role': 'user', 'content': 'Describe a red square.'}]


# ---------------------------------------------------------------------- the inputs lagent makes


def test_messages_become_lmdeploy_image_data_parts_that_lmdeploy_parses_as_images():
    inputs, do_preprocess = pipeline_inputs(LLMRequest(messages=CONVERSATION))
    assert do_preprocess is True
    parts = inputs[1]['content']
    assert [part['type'] for part in parts] == ['text', 'image_data', 'text', 'image_data']
    assert CONVERSATION[1]['content'][1]['type'] == 'image_url'  # the request itself is untouched
    assert Processor(tokenizer=None, chat_template=None)._has_multimodal_input(inputs)
    parsed = asyncio.run(Processor.async_parse_multimodal_item(inputs))
    images = [item for item in parsed[1]['content'] if item['type'] == 'image']
    assert [item['data'].tobytes() for item in images] == [picture(RED).tobytes(), picture(BLUE).tobytes()]


def test_a_rendered_prompt_with_images_is_what_lmdeploy_makes_of_its_prompt_and_images_pair():
    request = LLMRequest(
        prompt='<|im_start|>user\nCompare<IMAGE_TOKEN> with<IMAGE_TOKEN>', images=tuple(find_images(CONVERSATION))
    )
    inputs, do_preprocess = pipeline_inputs(request)
    assert do_preprocess is False
    images = [part['image_data']['data'] for part in inputs[0]['content'][1:]]
    assert [image.tobytes() for image in images] == [picture(RED).tobytes(), picture(BLUE).tobytes()]
    assert Processor.format_prompts([(request.prompt, images)]) == [inputs]  # lmdeploy's own reading of the pair


def test_a_prompt_without_images_joins_a_batch_of_messages_as_one_user_message():
    assert pipeline_inputs(LLMRequest(prompt='Hi'), as_message=True) == ([{'role': 'user', 'content': 'Hi'}], False)
    assert pipeline_inputs(LLMRequest(prompt='Hi')) == ('Hi', False)


def test_images_are_read_by_lagent_within_its_policy():
    local = [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': '/etc/hostname.png'}}]}]
    with pytest.raises(ValueError, match='reading local image files is not allowed'):
        pipeline_inputs(LLMRequest(messages=local), ImagePolicy.for_server())


# ---------------------------------------------------------------------- the CPU engine's check of the images


def test_the_cpu_engine_takes_images_only_where_their_tokens_are():
    """lmdeploy's input processor of the model, then the check that each image spans its own tokens."""
    config = pytest.importorskip('lmdeploy.messages').PytorchEngineConfig()
    processor = input_processor(model_folder('tiny-llava'), config)
    pixels = torch.rand(1, 3, 32, 32)
    pad, text = 7, [1, 5, 5]
    image = dict(pixel_values=pixels, offset=3, image_tokens=16, image_token_id=pad, image_size=(32, 32))
    ids, (record,) = accept_images(processor, text + [pad] * 16 + text, [image])
    assert ids == text + [pad] * 16 + text
    assert (record['start'], record['end'], record['token_id']) == (3, 19, pad)
    assert record['digest'] == pixel_digest(pixels.to(torch.float16))  # the model's dtype
    with pytest.raises(ValueError, match='not its own image tokens'):
        accept_images(processor, text + [pad] * 16 + text, [{**image, 'offset': 2}])
    with pytest.raises(ValueError, match='1 image tokens of the prompt belong to no image'):
        accept_images(processor, text + [pad] * 17 + text, [image])
    assert input_processor(model_folder('scripted'), config) is None  # a text-only model


# ---------------------------------------------------------------------- lmdeploy's vision-language pipeline


@dataclass
class VLModel:
    """LMDeployPipeline on one vision-language model folder, and the CPU engine lmdeploy built for it."""

    llm: LMDeployPipeline
    engines: CPUEngines
    folder: Path
    pixel_dtype: str
    """The dtype of the pixel values the engine gets (the model's for LLaVA, the processor's for Qwen2-VL)."""

    def requests(self, count: int) -> list[dict[str, Any]]:
        """The start events of the last ``count`` requests, in the order they started."""
        return [event for event in self.engines.last.events if event['event'] == 'start'][-count:]

    def prompt(self, event: dict[str, Any]) -> str:
        return self.llm.pipe.async_engine.tokenizer.decode(event['input_ids'], skip_special_tokens=False)

    def expected_images(self, *pngs: bytes) -> list[tuple[list[int], str]]:
        return expected_images(self.folder, self.pixel_dtype, *pngs)


def expected_images(folder: Path, dtype: str, *pngs: bytes) -> list[tuple[list[int], str]]:
    """The (shape, digest) of the pixel values the image processor of the model in ``folder`` makes of each image."""
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
    expected = []
    for png in pngs:
        pixels = processor(images=[picture(png)], return_tensors='pt')['pixel_values'].to(getattr(torch, dtype))
        expected.append((list(pixels.shape), pixel_digest(pixels)))
    return expected


def vl_model(name: str, pixel_dtype: str) -> Iterator[VLModel]:
    with cpu_engine() as engines:
        llm = LMDeployPipeline(path=name, backend='pytorch', session_len=2048, max_new_tokens=MAX_NEW_TOKENS)
    try:
        yield VLModel(llm, engines, model_folder(name), pixel_dtype)
    finally:
        llm.close()


@pytest.fixture(scope='module')
def llava() -> Iterator[VLModel]:
    yield from vl_model('tiny-llava', 'float16')


@pytest.fixture(scope='module')
def qwen2_vl() -> Iterator[VLModel]:
    yield from vl_model('tiny-qwen2-vl', 'float32')


def arrived(event: dict[str, Any]) -> list[tuple[list[int], str]]:
    assert event.get('images'), 'the request reached the engine without images'
    return [(image['shape'], image['digest']) for image in event['images']]


def image_spans(event: dict[str, Any]) -> list[int]:
    return [image['end'] - image['start'] for image in event['images']]


CHATML_PROMPT = (
    '<|im_start|>system\nYou describe pictures.<|im_end|>\n'
    '<|im_start|>user\nCompare{} with{}<|im_end|>\n<|im_start|>assistant\n'
)
""":data:`CONVERSATION` in ChatML (lagent's ``qwen2-vl`` template, and the model folder's own chat template),
each ``{}`` where an image goes."""


def qwen2_vl_tokens(*pngs: bytes) -> list[int]:
    """How many tokens Qwen2-VL gives each image: its grid of patches, merged 2x2."""
    processor = transformers.AutoImageProcessor.from_pretrained(str(model_folder('tiny-qwen2-vl')))
    grids = [processor(images=[picture(png)], return_tensors='pt')['image_grid_thw'] for png in pngs]
    return [int(grid.prod()) // processor.merge_size**2 for grid in grids]


def with_qwen2_vl_images(event: dict[str, Any], template: str = CHATML_PROMPT) -> str:
    """``template`` with each ``{}`` filled by Qwen2-VL's tokens for the next image of the request."""
    pads = ['<|vision_start|>' + '<|image_pad|>' * size + '<|vision_end|>' for size in image_spans(event)]
    return template.format(*pads)


@pytest.mark.slow
def test_a_conversation_s_images_reach_the_llava_engine_as_its_processor_s_pixel_values(llava):
    reply = llava.llm.chat(CONVERSATION)
    (event,) = llava.requests(1)
    assert arrived(event) == llava.expected_images(RED, BLUE)
    assert image_spans(event) == [16, 16]  # (32 / 8) ** 2 patches each
    # lmdeploy's LLaVA puts a message's images before its text (and keeps only its first text part)
    pads = '<pad>' * 16
    assert llava.prompt(event) == f'You describe pictures. USER: {pads}\n{pads}\nCompare ASSISTANT:'
    assert reply == digest_reply(event['input_ids'])  # the engine's answer comes back whole


@pytest.mark.slow
def test_the_async_engine_sends_the_images_too(llava):
    reply = asyncio.run(llava.llm.achat(CONVERSATION))
    (event,) = llava.requests(1)
    assert arrived(event) == llava.expected_images(RED, BLUE)
    assert reply == digest_reply(event['input_ids'])


@pytest.mark.slow
def test_a_batch_sends_each_conversation_s_images_with_it(llava):
    one_image = [
        {
            'role': 'user',
            'content': [
                {'type': 'image_url', 'image_url': {'url': data_uri(BLUE)}},
                {'type': 'text', 'text': 'What is it?'},
            ],
        }
    ]
    replies = llava.llm.chat([CONVERSATION, TEXT_ONLY, one_image])
    events = sorted(llava.requests(3), key=lambda event: len(event.get('images', [])))
    assert 'images' not in events[0]
    assert arrived(events[1]) == llava.expected_images(BLUE)
    assert arrived(events[2]) == llava.expected_images(RED, BLUE)
    assert replies == [digest_reply(events[i]['input_ids']) for i in (2, 0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize('call', ['chat', 'achat', 'batch'])
def test_llava_rejects_images_placed_by_a_lagent_template_with_a_hint(llava, call):
    """lmdeploy's LLaVA places images itself: it finds two markers too many and fails the request."""
    llm = LMDeployPipeline.from_pipeline(llava.llm.pipe, meta_template='llava', max_new_tokens=8)
    before = len(llava.engines.last.events)
    with pytest.raises(LLMError, match="only some of lmdeploy's vision models read"):
        if call == 'chat':
            llm.chat(CONVERSATION)
        elif call == 'achat':
            asyncio.run(llm.achat(CONVERSATION))
        else:
            llm.chat([CONVERSATION, TEXT_ONLY])
    assert not any('images' in event for event in llava.engines.last.events[before:])  # refused before the engine


@pytest.mark.slow
def test_a_qwen2_vl_conversation_keeps_its_images_between_its_text_parts(qwen2_vl):
    reply = qwen2_vl.llm.chat(CONVERSATION)
    (event,) = qwen2_vl.requests(1)
    assert arrived(event) == qwen2_vl.expected_images(RED, BLUE)
    assert image_spans(event) == qwen2_vl_tokens(RED, BLUE)
    assert qwen2_vl.prompt(event) == with_qwen2_vl_images(event)
    assert reply == digest_reply(event['input_ids'])


@pytest.mark.slow
@pytest.mark.parametrize('call', ['chat', 'achat'])
def test_a_lagent_template_places_the_images_at_its_markers(qwen2_vl, call):
    llm = LMDeployPipeline.from_pipeline(qwen2_vl.llm.pipe, meta_template='qwen2-vl', max_new_tokens=MAX_NEW_TOKENS)
    reply = llm.chat(CONVERSATION) if call == 'chat' else asyncio.run(llm.achat(CONVERSATION))
    (event,) = qwen2_vl.requests(1)
    assert arrived(event) == qwen2_vl.expected_images(RED, BLUE)
    assert image_spans(event) == qwen2_vl_tokens(RED, BLUE)  # each image's own tokens where its marker was
    assert qwen2_vl.prompt(event) == with_qwen2_vl_images(event)
    assert reply == digest_reply(event['input_ids'])


@pytest.mark.slow
def test_a_batch_of_rendered_prompts_with_and_without_images(qwen2_vl):
    llm = LMDeployPipeline.from_pipeline(qwen2_vl.llm.pipe, meta_template='qwen2-vl', max_new_tokens=MAX_NEW_TOKENS)
    replies = llm.chat([CONVERSATION, TEXT_ONLY])
    events = sorted(qwen2_vl.requests(2), key=lambda event: len(event.get('images', [])))
    assert qwen2_vl.prompt(events[0]) == (
        '<|im_start|>user\nDescribe a red square.<|im_end|>\n<|im_start|>assistant\n'
    )  # sent as it was rendered
    assert arrived(events[1]) == qwen2_vl.expected_images(RED, BLUE)
    assert qwen2_vl.prompt(events[1]) == with_qwen2_vl_images(events[1])
    assert replies == [digest_reply(events[1]['input_ids']), digest_reply(events[0]['input_ids'])]


@pytest.mark.slow
def test_a_text_model_takes_no_images(lmdeploy_pipeline, llava):
    """lmdeploy builds no image encoder for a text model (and 0.16 would answer as if there were no image)."""
    assert llava.llm.accepts_images == {'messages', 'prompt'}
    assert lmdeploy_pipeline.accepts_images == frozenset()
    before = len(lmdeploy_pipeline.pipe.async_engine.engine.events)
    with pytest.raises(ImageError, match=r'message 1, part 1 .*LMDeployPipeline does not take images'):
        lmdeploy_pipeline.chat(CONVERSATION)
    assert len(lmdeploy_pipeline.pipe.async_engine.engine.events) == before  # nothing was sent


# ---------------------------------------------------------------------- lmdeploy's api_server


@pytest.fixture(scope='module')
def vl_server(lmdeploy_command: Path, lmdeploy_workdir: Path) -> Iterator[CPUServer]:
    """lmdeploy's api_server serving ``tiny-qwen2-vl`` on the CPU engine."""
    with api_server(lmdeploy_command, model_folder('tiny-qwen2-vl'), lmdeploy_workdir, '--model-name', 'vl') as server:
        yield server


@pytest.mark.slow
def test_the_client_s_images_reach_lmdeploy_s_server_as_pixel_values(vl_server):
    before = len(vl_server.events())
    with LMDeployClient(vl_server.url, max_new_tokens=MAX_NEW_TOKENS) as llm:
        reply = llm.chat(CONVERSATION)
    (event,) = [event for event in vl_server.events()[before:] if event['event'] == 'start']
    assert arrived(event) == expected_images(model_folder('tiny-qwen2-vl'), 'float32', RED, BLUE)
    assert image_spans(event) == qwen2_vl_tokens(RED, BLUE)
    assert reply == digest_reply(event['input_ids'])


@pytest.mark.slow
def test_lmdeploy_s_server_fetches_no_image_from_a_private_address(vl_server):
    """lagent sends an http(s) image URL as it is; lmdeploy fetches only from global addresses."""
    with image_server() as images, LMDeployClient(vl_server.url, max_new_tokens=8) as llm:
        question = [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': images.url + '/cat.png'}}]}]
        with pytest.raises(RequestError, match=r'HTTP 400: URL is blocked .*non-global IP'):
            llm.chat(question)
        assert images.requests == []  # neither lagent nor lmdeploy fetched it
