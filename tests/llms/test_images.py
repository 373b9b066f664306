"""Images in messages: the image_url parts, their limits and errors, and how each kind of
engine gets them. Images come from files, data: URIs and a local HTTP server only."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from lagent.images import (
    ImageError,
    ImagePolicy,
    content_text,
    find_images,
    inline_images,
    load_image,
    load_images,
)
from lagent.llms import BaseLLM, LLMRequest, ScriptedLLM
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.openai_compatible import OpenAICompatible
from lagent.prompts import ChatTemplate, MetaTemplate
from lagent.schema import Chunk, GenerationParams, Message
from tests.fixtures.fault_server import fault_server
from tests.fixtures.image_server import ImageServer, image_server, png_bytes
from tests.fixtures.trickle_server import trickle_server
from tests.fixtures.waiting import wait_until


@pytest.fixture(scope='module')
def images() -> Iterator[ImageServer]:
    with image_server() as server:
        yield server


@pytest.fixture
def cat_file(tmp_path: Path) -> Path:
    path = tmp_path / 'cat.png'
    path.write_bytes(png_bytes())
    return path


def data_uri(data: bytes, mime: str = 'image/png') -> str:
    return f'data:{mime};base64,{base64.b64encode(data).decode()}'


def image_part(url: str) -> dict:
    return {'type': 'image_url', 'image_url': {'url': url}}


def ask(*parts: dict | str) -> list[dict]:
    content = [{'type': 'text', 'text': part} if isinstance(part, str) else part for part in parts]
    return [{'role': 'user', 'content': content}]


def pixels(image: Image.Image) -> bytes:
    return image.convert('RGB').tobytes()


REFERENCE = Image.open(io.BytesIO(png_bytes())).convert('RGB')


# ---------------------------------------------------------------------- finding and naming parts


def test_find_images_tells_urls_data_and_files_apart(cat_file):
    conversation = [
        {'role': 'system', 'content': 'Look closely.'},
        *ask('What is in ', image_part('https://example.com/a.png'), ' and ', image_part(str(cat_file))),
        {'role': 'assistant', 'content': 'Two pictures.'},
        *ask(image_part(data_uri(b'xx')), image_part(cat_file.as_uri()), {'type': 'image_url', 'image_url': 'b.png'}),
    ]
    refs = find_images(conversation)
    assert [(ref.kind, ref.where) for ref in refs] == [
        ('url', 'message 1, part 1'),
        ('file', 'message 1, part 3'),
        ('data', 'message 3, part 0'),
        ('file', 'message 3, part 1'),
        ('file', 'message 3, part 2'),
    ]
    assert refs[1].value == refs[3].value == str(cat_file)  # a file:// URI is a path
    assert find_images([Message.model_validate(m) for m in conversation]) == refs  # Message objects too


@pytest.mark.parametrize(
    ('url', 'message'),
    [
        ('ftp://example.com/a.png', "message 0, part 0: image URL scheme 'ftp' is not supported"),
        ('   ', 'message 0, part 0: an image_url part needs'),
    ],
)
def test_malformed_image_parts_are_named(url, message):
    with pytest.raises(ImageError, match=message):
        find_images(ask(image_part(url)))


def test_messages_validate_image_parts():
    message = Message(role='user', content=[{'type': 'image_url', 'image_url': 'https://example.com/a.png'}])
    assert message.to_openai()['content'] == [image_part('https://example.com/a.png')]
    with pytest.raises(ValueError, match='an image_url part needs'):
        Message(role='user', content=[{'type': 'image_url'}])


def test_content_text_puts_placeholders_where_the_images_are():
    content = ask('Compare ', image_part('a.png'), ' with ', image_part('b.png'), '.')[0]['content']
    assert content_text(content, '<image>') == 'Compare <image> with <image>.'
    with pytest.raises(ImageError, match=r"message 4, part 1 \('a.png'\): this prompt format has no image placeholder"):
        content_text(content, None, message_index=4)
    with pytest.raises(ImageError, match="part 0: content parts of type 'input_audio' cannot be rendered"):
        content_text([{'type': 'input_audio', 'input_audio': {}}], '<image>')


# ---------------------------------------------------------------------- reading images


def test_an_image_reads_the_same_from_a_file_a_data_uri_and_a_url(images, cat_file):
    conversation = ask(
        image_part(str(cat_file)), image_part(data_uri(png_bytes())), image_part(f'{images.url}/cat.png')
    )
    loaded = load_images(conversation)
    assert [pixels(image) for image in loaded] == [pixels(REFERENCE)] * 3
    assert all(image.mode == 'RGB' for image in loaded)


def test_redirects_are_followed(images):
    (ref,) = find_images(ask(image_part(f'{images.url}/redirect')))
    assert pixels(load_image(ref)) == pixels(REFERENCE)


@pytest.mark.parametrize(
    ('path', 'message'),
    [
        ('/missing.png', 'fetching the image answered HTTP 404'),
        ('/notes.txt', 'not a readable image'),
        ('/large.png', 'larger than the limit of 2000 bytes'),  # says so in Content-Length
        ('/unsized.png', 'larger than the limit of 2000 bytes'),  # found while reading
    ],
)
def test_url_problems_name_the_part(images, path, message):
    (ref,) = find_images(ask('see', image_part(f'{images.url}{path}')))
    with pytest.raises(ImageError, match=f'message 0, part 1 .*{message}'):
        load_image(ref, ImagePolicy(max_bytes=2000))


def test_an_unreachable_host_is_an_image_error():
    (ref,) = find_images(ask(image_part('http://127.0.0.1:9/cat.png')))  # the discard port: nothing listens
    with pytest.raises(ImageError, match='fetching the image failed: ConnectionError'):
        load_image(ref, ImagePolicy(fetch_timeout=2))


@pytest.mark.parametrize('path', ['/slow-headers.png', '/slow-body.png'])
def test_a_server_that_trickles_bytes_cannot_stretch_a_fetch_past_its_deadline(path):
    with trickle_server() as server:
        (ref,) = find_images(ask(image_part(f'{server.url}{path}')))
        started = time.monotonic()
        with pytest.raises(
            ImageError, match=r'message 0, part 0 .*fetching the image failed: the total timeout expired'
        ):
            load_image(ref, ImagePolicy(fetch_timeout=5, fetch_total_timeout=0.5))  # no read waits 5 s
        assert time.monotonic() - started < 0.5 + 1.0
        assert wait_until(lambda: server.disconnects, 3)  # the connection was closed, not left to trickle on


def test_nothing_is_fetched_or_read_where_the_policy_forbids_it(images, cat_file):
    server = ImagePolicy.for_server()
    before = len(images.requests)
    (url,) = find_images(ask(image_part(f'{images.url}/cat.png')))
    with pytest.raises(ImageError, match=r'fetching images is not allowed here \(ImagePolicy.allow_fetch\)'):
        load_image(url, server)
    (local,) = find_images(ask(image_part(str(cat_file))))
    with pytest.raises(ImageError, match=r'reading local image files is not allowed here'):
        load_image(local, server)
    assert len(images.requests) == before
    (inline,) = find_images(ask(image_part(data_uri(png_bytes()))))
    assert pixels(load_image(inline, server)) == pixels(REFERENCE)  # the image in the request itself is fine


def test_pixel_limits_are_checked_before_decoding(tmp_path):
    huge = tmp_path / 'huge.png'
    Image.new('1', (7000, 6000)).save(huge)  # 42 million pixels in a few kilobytes
    assert huge.stat().st_size < 100_000
    (ref,) = find_images(ask(image_part(str(huge))))
    with pytest.raises(ImageError, match='7000x6000 = 42000000 pixels, more than the limit of 36000000'):
        load_image(ref)
    (small,) = find_images(ask(image_part(data_uri(png_bytes()))))
    with pytest.raises(ImageError, match='24x16 = 384 pixels, more than the limit of 100'):
        load_image(small, ImagePolicy(max_pixels=100))


@pytest.mark.parametrize(
    ('url', 'message'),
    [
        (data_uri(b'not an image at all'), 'not a readable image'),
        (data_uri(png_bytes()[:80]), 'the image data is damaged'),
        (data_uri(png_bytes(), 'text/plain'), "the data: URI holds 'text/plain', not an image"),
        ('data:image/png,rawbytes', 'must be base64-encoded'),
        ('data:image/png;base64,@@@@', 'not valid base64'),
        ('data:nonsense', 'not a valid data: URI'),
        ('/no/such/cat.png', 'cannot read the image file: No such file or directory'),
    ],
)
def test_bad_images_name_the_part(url, message):
    (ref,) = find_images(ask('look:', image_part(url)))
    with pytest.raises(ImageError, match=message) as info:
        load_image(ref)
    assert str(info.value).startswith('message 0, part 1 ')
    assert len(str(info.value)) < 300  # a data: URI is described, never quoted whole


def test_a_truncated_image_is_damaged_even_where_pillow_was_told_to_fill_it(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)  # as importing lmdeploy does, process-wide
    (ref,) = find_images(ask(image_part(data_uri(png_bytes((300, 200))[:500]))))
    with pytest.raises(ImageError, match='the image data is damaged: image file is truncated'):
        load_image(ref)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as it was


def test_policy_limits_are_validated():
    with pytest.raises(ValueError, match='must be positive'):
        ImagePolicy(max_bytes=0)
    with pytest.raises(ValueError, match='fetch_total_timeout must be positive'):
        ImagePolicy(fetch_total_timeout=0)
    assert ImagePolicy.for_server(max_pixels=10).max_pixels == 10


# ---------------------------------------------------------------------- inline_images: what servers get


def test_inline_images_turns_files_into_data_uris_and_passes_urls_on(images, cat_file):
    given_data = data_uri(png_bytes(color=(1, 2, 3)))
    conversation = [
        {'role': 'system', 'content': 'Describe.'},
        *ask('a', image_part(str(cat_file)), {'type': 'image_url', 'image_url': {'url': given_data, 'detail': 'low'}}),
        *ask(image_part(f'{images.url}/cat.png')),
    ]
    before = len(images.requests)
    sent = inline_images(conversation)
    assert sent[0] is not conversation[0] and sent[0] == conversation[0]
    assert sent[1]['content'][1] == image_part(data_uri(cat_file.read_bytes()))
    assert sent[1]['content'][2] == {'type': 'image_url', 'image_url': {'url': given_data, 'detail': 'low'}}
    assert sent[2]['content'][0] == image_part(f'{images.url}/cat.png')
    assert len(images.requests) == before  # the server fetches URLs itself
    assert conversation[1]['content'][1] == image_part(str(cat_file))  # the caller's messages are untouched


# ---------------------------------------------------------------------- engines


@pytest.mark.parametrize('engine', [OpenAICompatible, LMDeployClient])
def test_openai_protocol_engines_send_image_url_parts(engine, images, cat_file):
    conversation = ask('What are these?', image_part(str(cat_file)), image_part(f'{images.url}/cat.png'))
    with fault_server() as server, engine(server.url, model_name='vlm', max_new_tokens=8) as llm:
        assert llm.chat(conversation) == 'Hello, world!'
        assert ''.join(chunk.text for chunk in llm.stream(conversation)) == 'Hello, world!'
        bodies = [request.body for request in server.requests]
    assert [request.path for request in server.requests] == ['/v1/chat/completions'] * 2
    for body in bodies:
        (message,) = body['messages']
        assert message['content'] == [
            {'type': 'text', 'text': 'What are these?'},
            image_part(data_uri(cat_file.read_bytes())),
            image_part(f'{images.url}/cat.png'),
        ]


async def test_async_requests_carry_the_same_images(images, cat_file):
    conversation = ask('Describe', image_part(str(cat_file)))
    with fault_server() as server:
        async with OpenAICompatible(server.url, model_name='vlm') as llm:
            assert await llm.achat(conversation) == 'Hello, world!'
            assert ''.join([chunk.text async for chunk in llm.astream(conversation)]) == 'Hello, world!'
        assert [r.body['messages'][0]['content'][1] for r in server.requests] == [
            image_part(data_uri(cat_file.read_bytes()))
        ] * 2


def test_a_bad_image_fails_before_anything_is_sent(cat_file):
    with fault_server() as server, OpenAICompatible(server.url, model_name='vlm') as llm:
        with pytest.raises(ImageError, match=r'message 0, part 0 .*not a readable image'):
            llm.chat(ask(image_part(data_uri(b'garbage'))))
        strict = OpenAICompatible(server.url, model_name='vlm', image_policy=ImagePolicy.for_server())
        with pytest.raises(ImageError, match='reading local image files is not allowed'):
            strict.chat(ask(image_part(str(cat_file))))
        strict.close()
        assert server.requests == []


def test_a_prompt_template_on_an_openai_engine_cannot_carry_images(cat_file):
    with fault_server() as server, OpenAICompatible(server.url, model_name='vlm', meta_template='chatml') as llm:
        with pytest.raises(ImageError, match='OpenAICompatible takes images with messages: leave out the template'):
            llm.chat(ask('Hi', image_part(str(cat_file))))
        assert server.requests == []


class EchoPrompt(BaseLLM):
    """A prompt-only engine that answers with what it was asked: the prompt, and the images it got."""

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        images = [load_image(ref, self.image_policy).size for ref in request.images]
        yield Chunk(json.dumps({'prompt': request.prompt, 'images': images}), finish_reason='stop')


class EchoPromptWithImages(EchoPrompt):
    accepts_images = frozenset({'prompt'})


def test_prompt_only_engine_with_a_placeholder_template_gets_the_images_in_order(cat_file, images):
    llm = EchoPromptWithImages(meta_template='qwen2-vl')
    conversation = ask('First ', image_part(str(cat_file)), ' then ', image_part(f'{images.url}/large.png'))
    request = llm.prepare(conversation)
    assert request.prompt == (
        '<|im_start|>user\nFirst <|vision_start|><|image_pad|><|vision_end|> then '
        '<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n'
    )
    assert [ref.where for ref in request.images] == ['message 0, part 1', 'message 0, part 3']
    assert json.loads(llm.chat(conversation, stop_words=[]))['images'] == [[24, 16], [1500, 1500]]


def test_prompt_only_engine_errors(cat_file):
    conversation = ask('Hi', image_part(str(cat_file)))
    with pytest.raises(ImageError, match=r'message 0, part 1 .*: EchoPrompt does not take images'):
        EchoPrompt(meta_template='qwen2-vl').chat(conversation)
    with pytest.raises(ImageError, match='EchoPrompt does not take images'):
        EchoPrompt().chat(conversation)
    with pytest.raises(ImageError, match='this prompt format has no image placeholder'):
        EchoPromptWithImages(meta_template='chatml').chat(conversation)
    with pytest.raises(ImageError, match='no image placeholder'), pytest.warns(UserWarning):
        EchoPromptWithImages().chat(conversation)  # no template: contents joined, nowhere to put the image


def test_chat_templates_get_a_placeholder_or_place_images_themselves(cat_file):
    llm = EchoPromptWithImages(chat_template=ChatTemplate('{{ messages[0].content }}', image_placeholder='<img>'))
    conversation = ask('look: ', image_part(str(cat_file)))
    assert llm.prepare(conversation).prompt == 'look: <img>'
    aware = ChatTemplate(
        "{% for p in messages[0].content %}{{ '[IMG]' if p.type == 'image_url' else p.text }}{% endfor %}"
    )
    assert EchoPromptWithImages(chat_template=aware).prepare(conversation).prompt == 'look: [IMG]'
    unaware = ChatTemplate("{{ 'U: ' + messages[0].content }}")
    with pytest.raises(ValueError, match='the conversation holds images: give the template an image_placeholder'):
        EchoPromptWithImages(chat_template=unaware).prepare(conversation)


def test_an_engine_s_own_placeholder_replaces_the_template_s(cat_file):
    class LMDeployLike(EchoPromptWithImages):
        image_placeholder = '<IMAGE_TOKEN>'

    prompt = LMDeployLike(meta_template='chatml').prepare(ask(image_part(str(cat_file)), 'What?')).prompt
    assert prompt == '<|im_start|>user\n<IMAGE_TOKEN>What?<|im_end|>\n<|im_start|>assistant\n'
    roles = [{'role': 'user'}, {'role': 'assistant', 'begin': 'A:', 'generate': True}]
    assert MetaTemplate(roles, image_placeholder='<i>').render(ask(image_part('x.png'))) == '<i>A:'


def test_a_local_llama_cpp_model_refuses_images_clearly(smollm2_path, cat_file):
    from lagent.llms import LlamaCpp

    with LlamaCpp(smollm2_path, n_ctx=256) as llm, pytest.raises(ImageError, match='LlamaCpp does not take images'):
        llm.chat(ask('Hi', image_part(str(cat_file))))


def test_agents_pass_images_on_to_engines_that_take_them(cat_file):
    from lagent.agents import FunctionCallAgent

    llm = ScriptedLLM(['A red picture.'])
    agent = FunctionCallAgent(llm, [])
    assert agent.chat(ask('What colour?', image_part(str(cat_file)))[0]).answer == 'A red picture.'
    (sent,) = llm.requests
    assert sent[-1]['content'][1] == image_part(data_uri(cat_file.read_bytes()))
    assert agent.memory.messages[0].content[1].image_url.url == str(cat_file)  # the memory keeps the reference


def test_a_llama_cpp_server_without_a_vision_projector_is_not_sent_images(smollm2_path, cat_file, tmp_path):
    """llama.cpp's server answers a text model's image request as if there were no image: lagent refuses it."""
    from lagent.llms import LlamaCppServer

    with LlamaCppServer(smollm2_path, n_ctx=256, max_new_tokens=4, log_path=tmp_path / 'server.log') as llm:
        assert llm.accepts_images == frozenset()
        with pytest.raises(ImageError, match='LlamaCppServer does not take images'):
            llm.chat(ask('What colour?', image_part(str(cat_file))))


def test_lagent_serve_reads_no_files_and_fetches_nothing_for_its_clients(images, cat_file):
    """Images in a request come from a client: the server passes inline images on, and refuses
    paths on its own disk and URLs it would have to fetch."""
    import requests

    from lagent.serve import Server

    engine = ScriptedLLM(['A red picture.'] * 10)
    trusted = ScriptedLLM(['Seen.'] * 10, image_policy=ImagePolicy(max_pixels=10_000))  # chosen on purpose: kept
    with Server({'vlm': engine, 'trusted': trusted}).run_in_thread() as url:
        assert engine.image_policy == ImagePolicy.for_server() and trusted.image_policy.allow_local_files

        def post(model: str, *parts: dict | str) -> requests.Response:
            body = {'model': model, 'messages': ask('What colour?', *parts)}
            return requests.post(f'{url}/v1/chat/completions', json=body, timeout=60)

        inline = post('vlm', image_part(data_uri(png_bytes())))
        assert inline.status_code == 200 and inline.json()['choices'][0]['message']['content'] == 'A red picture.'
        assert engine.requests[-1][0]['content'][1] == image_part(data_uri(png_bytes()))
        local = post('vlm', image_part(str(cat_file)))
        assert local.status_code == 400
        assert 'reading local image files is not allowed here' in local.json()['error']['message']
        assert len(engine.requests) == 1
        before = len(images.requests)
        assert post('vlm', image_part(f'{images.url}/cat.png')).status_code == 200  # passed on, not fetched
        assert engine.requests[-1][0]['content'][1] == image_part(f'{images.url}/cat.png')
        assert len(images.requests) == before
        assert post('trusted', image_part(str(cat_file))).status_code == 200
