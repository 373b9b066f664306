"""Training data from agent runs: conversations in, supervised fine-tuning examples out.

::

    from lagent.data import export_sft
    report = export_sft(['runs.jsonl'], 'model.gguf', 'sft.jsonl', drop_failed=True, deduplicate=True)

Each example holds the conversation (``messages``, ``tools``), its tokens as
the model's own chat template renders them (``input_ids``), and ``labels``
that are ``-100`` everywhere except on the assistant's turns. The command
line twin is ``lagent export-sft``.
"""

from lagent.data.sft import (
    DEFAULT_IMAGE_PLACEHOLDER,
    IGNORE_INDEX,
    ExportReport,
    SFTExample,
    build_sft_example,
    export_sft,
)
from lagent.data.tokenizers import ChatTokenizer, GGUFTokenizer, HFTokenizer, load_tokenizer
from lagent.data.trajectories import (
    SUCCESS_STATUSES,
    Trajectory,
    TrajectoryFilter,
    load_trajectories,
    read_trajectories,
)

__all__ = [
    'DEFAULT_IMAGE_PLACEHOLDER',
    'IGNORE_INDEX',
    'SUCCESS_STATUSES',
    'ChatTokenizer',
    'ExportReport',
    'GGUFTokenizer',
    'HFTokenizer',
    'SFTExample',
    'Trajectory',
    'TrajectoryFilter',
    'build_sft_example',
    'export_sft',
    'load_tokenizer',
    'load_trajectories',
    'read_trajectories',
]
