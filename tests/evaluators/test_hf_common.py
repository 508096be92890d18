"""Shared Hugging Face helpers: content digests, untying shared weights, depth students."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from evaluators.tasks._loader import check_task
from evaluators.tasks.hf_common import (
    checkpoint_digest,
    keep_blocks,
    transformer_blocks,
    untie_shared_weights,
)
from spaces.layers import compressible_layers
from spaces.task import Split, Task
from tests.evaluators import hf_text_fixtures as fx

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
# CI installs the huggingface extra: there a missing transformers is an error, not a skip
needs_transformers = pytest.mark.skipif(
    not HAS_TRANSFORMERS and not os.environ.get("CI"),
    reason='transformers is not installed (pip install -e ".[huggingface]")',
)


class Logits(nn.Module):
    """A Transformers model whose forward returns its mean logits (one tensor)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=ids).logits.mean(dim=1)
        return out


def test_checkpoint_digest_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"a": 1}))
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    first = checkpoint_digest(tmp_path)
    assert first == checkpoint_digest(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 9 + b"\x01")
    second = checkpoint_digest(tmp_path)
    assert second != first
    (tmp_path / "tokenizer.json").write_text("{}")
    assert checkpoint_digest(tmp_path) not in (first, second)


@needs_transformers
def test_tied_weights_are_untied_and_outputs_kept() -> None:
    """A masked-LM head shares the word embeddings: check_task refuses that, and after
    untying each layer has its own tensor, with the same outputs."""
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    mlm = BertForMaskedLM(fx.bert_config(40)).eval()
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    wrapped = Logits(mlm)
    ids = torch.randint(0, 40, (3, 7))
    split = Split((ids,), torch.zeros(3, dtype=torch.long))
    task = Task("tied", wrapped, split, split, split, example_input=(ids[:1],))
    with pytest.raises(ValueError, match="share one weight tensor"):
        check_task(task, label="tied")
    before = wrapped(ids)
    pairs = untie_shared_weights(wrapped)
    assert pairs == [("model.bert.embeddings.word_embeddings", "model.cls.predictions.decoder")]
    assert mlm.config.tie_word_embeddings is False
    check_task(task, label="tied")
    assert torch.equal(wrapped(ids), before)
    with torch.no_grad():
        mlm.cls.predictions.decoder.weight.add_(1.0)
    embeddings = mlm.bert.embeddings.word_embeddings.weight
    assert not torch.equal(embeddings, mlm.cls.predictions.decoder.weight)  # two tensors now
    assert untie_shared_weights(wrapped) == []


@needs_transformers
def test_keep_blocks_copies_the_kept_blocks_under_teacher_names() -> None:
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    teacher = Logits(BertForSequenceClassification(fx.bert_config(40, num_hidden_layers=4)))
    teacher.eval()
    assert transformer_blocks(teacher)[0] == "model.bert.encoder.layer"
    ids = torch.randint(0, 40, (3, 7))
    with torch.no_grad():
        assert torch.equal(keep_blocks(teacher, (0, 1, 2, 3))(ids), teacher(ids))
    student = keep_blocks(teacher, (1, 3))
    assert len(transformer_blocks(student)[1]) == 2 and len(transformer_blocks(teacher)[1]) == 4
    config = student.model.config  # type: ignore[union-attr]
    assert config.num_hidden_layers == 2
    teacher_layers = compressible_layers(teacher)
    student_layers = compressible_layers(student)
    assert set(student_layers) < set(teacher_layers)
    # block 0 of the student is the teacher's block 1, copied (not shared)
    name = "model.bert.encoder.layer.0.output.dense"
    kept = "model.bert.encoder.layer.1.output.dense"
    assert torch.equal(student_layers[name].weight, teacher_layers[kept].weight)
    assert student_layers[name].weight is not teacher_layers[kept].weight
    with pytest.raises(ValueError, match=r"Blocks to keep \[4\] must be in 0\.\.3"):
        keep_blocks(teacher, (4,))
    with pytest.raises(ValueError, match="no list of transformer blocks"):
        transformer_blocks(nn.Sequential(nn.Linear(2, 2)))
