"""HFTransformer with a vision-language model: a tiny LLaVA built here from a config with
random weights (no download; SmolLM2's tokenizer from its GGUF, plus an ``<image>`` token),
saved as a model directory and loaded by HFTransformer like any other. The images a
conversation holds must reach the model as the pixel values its processor makes of them."""

from __future__ import annotations

import base64
import copy
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from PIL import Image  # noqa: E402

from lagent.images import ImageError  # noqa: E402
from lagent.llms import HFTransformer  # noqa: E402
from tests.fixtures.image_server import ImageServer, image_server, png_bytes  # noqa: E402
from tests.fixtures.smollm2_tokenizer import smollm2_hf_tokenizer  # noqa: E402

pytestmark = pytest.mark.slow

IMAGE_SIZE, PATCH = 32, 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
# llava-1.5's format; the processor's chat template reads HF image parts ({'type': 'image'})
CHAT_TEMPLATE = (
    '{% for m in messages %}{{ m.role.upper() }}: '
    "{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{% if p.type == 'image' %}"
    '<image>\n{% else %}{{ p.text }}{% endif %}{% endfor %}{% endif %} {% endfor %}'
    '{% if add_generation_prompt %}ASSISTANT:{% endif %}'
)


def build_tiny_llava(directory: Path, gguf: Path) -> Path:
    """Save a tiny random-weight LLaVA (CLIP vision tower, Llama text model) and its processor."""
    try:
        image_processor_class = transformers.CLIPImageProcessorPil  # without torchvision
    except AttributeError:
        image_processor_class = transformers.CLIPImageProcessor
    tokenizer = copy.deepcopy(smollm2_hf_tokenizer(gguf))
    tokenizer.add_special_tokens({'additional_special_tokens': ['<image>']})
    processor = transformers.LlavaProcessor(
        image_processor=image_processor_class(
            size={'shortest_edge': IMAGE_SIZE}, crop_size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE}
        ),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy='default',
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    config = transformers.LlavaConfig(
        text_config=transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
        ),
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids('<image>'),
        image_seq_length=IMAGE_TOKENS,
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope='module')
def tiny_llava(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp('tiny-llava'), smollm2_path)


@pytest.fixture(scope='module')
def images() -> Iterator[ImageServer]:
    with image_server() as server:
        yield server


class SeenByVision:
    """Records the pixel values the model's vision tower is called with, and the token ids the model gets."""

    def __init__(self, model: Any):
        self.pixel_values: list[Any] = []
        self.input_ids: list[Any] = []
        vision = model.model.vision_tower
        self._hooks = [
            vision.register_forward_pre_hook(self._vision, with_kwargs=True),
            model.register_forward_pre_hook(self._model, with_kwargs=True),
        ]

    def _vision(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.pixel_values.append(kwargs.get('pixel_values', args[0] if args else None))

    def _model(self, module: Any, args: tuple, kwargs: dict) -> None:
        if kwargs.get('input_ids') is not None:
            self.input_ids.append(kwargs['input_ids'])

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def data_uri(data: bytes) -> str:
    return 'data:image/png;base64,' + base64.b64encode(data).decode()


def question(*urls: str, text: str = 'What is this?') -> list[dict]:
    parts = [{'type': 'image_url', 'image_url': {'url': url}} for url in urls]
    return [{'role': 'user', 'content': [*parts, {'type': 'text', 'text': text}]}]


def expected_pixels(llm: HFTransformer, *pngs: bytes) -> Any:
    pictures = [Image.open(io.BytesIO(png)).convert('RGB') for png in pngs]
    return llm.processor.image_processor(pictures, return_tensors='pt')['pixel_values']


@pytest.fixture(scope='module')
def llm(tiny_llava: Path) -> Iterator[HFTransformer]:
    with HFTransformer(tiny_llava, device='cpu', torch_dtype='float32', temperature=0, max_new_tokens=4) as engine:
        yield engine


def test_a_vision_model_directory_loads_with_its_processor(llm):
    assert type(llm.model).__name__ == 'LlavaForConditionalGeneration'
    assert type(llm.processor).__name__ == 'LlavaProcessor'
    assert llm.accepts_images == {'messages', 'prompt'}


def test_pixel_values_of_a_message_image_reach_the_model(llm, tmp_path):
    red, blue = png_bytes(), png_bytes(color=(20, 40, 230))
    (tmp_path / 'blue.png').write_bytes(blue)
    seen = SeenByVision(llm.model)
    try:
        reply = llm.complete(question(data_uri(red), str(tmp_path / 'blue.png'), text='Compare them.'))
    finally:
        seen.remove()
    assert reply.usage.completion_tokens >= 1
    assert torch.equal(seen.pixel_values[0], expected_pixels(llm, red, blue))  # both, in order
    image_token = llm.model.config.image_token_index
    assert int((seen.input_ids[0] == image_token).sum()) == 2 * IMAGE_TOKENS  # each expanded by the processor
    prompt = llm.tokenizer.decode(seen.input_ids[0][0])
    assert prompt.startswith('USER: <image>') and prompt.endswith('Compare them. ASSISTANT:')


def test_different_images_give_the_model_different_inputs(llm):
    first = SeenByVision(llm.model)
    try:
        llm.complete(question(data_uri(png_bytes())))
        llm.complete(question(data_uri(png_bytes(color=(20, 40, 230)))))
    finally:
        first.remove()
    assert not torch.equal(first.pixel_values[0], first.pixel_values[1])


def test_a_url_image_is_fetched_within_the_policy(llm, images):
    seen = SeenByVision(llm.model)
    try:
        text = ''.join(chunk.text for chunk in llm.stream(question(f'{images.url}/blue.png')))
    finally:
        seen.remove()
    assert isinstance(text, str) and '/blue.png' in images.requests
    assert torch.equal(seen.pixel_values[0], expected_pixels(llm, images.routes['/blue.png'][2]))


def test_a_prompt_template_with_a_placeholder_carries_the_image(tiny_llava):
    with HFTransformer(tiny_llava, meta_template='llava', device='cpu', temperature=0, max_new_tokens=3) as llm:
        request = llm.prepare(question(data_uri(png_bytes())))
        assert request.prompt == 'USER: <image>\nWhat is this? ASSISTANT:'
        seen = SeenByVision(llm.model)
        try:
            llm.complete(question(data_uri(png_bytes())))
        finally:
            seen.remove()
        assert torch.equal(seen.pixel_values[0], expected_pixels(llm, png_bytes()))


def test_bad_images_are_named_before_the_model_runs(llm):
    seen = SeenByVision(llm.model)
    try:
        with pytest.raises(ImageError, match=r'message 0, part 0 .*not a readable image'):
            llm.complete(question(data_uri(b'garbage')))
    finally:
        seen.remove()
    assert seen.pixel_values == [] and seen.input_ids == []


def test_a_text_model_takes_no_images(smollm2_path):
    text_model = transformers.AutoModelForCausalLM.from_config(
        transformers.LlamaConfig(
            vocab_size=49152,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    llm = HFTransformer.from_loaded(text_model, smollm2_hf_tokenizer(smollm2_path), device='cpu')
    assert llm.accepts_images == frozenset()
    with pytest.raises(ImageError, match='HFTransformer does not take images'):
        llm.chat(question(data_uri(png_bytes())))
