"""``[task] huggingface`` with ``kind = "causal-lm"``: the importer on a tiny GPT-2 built here
(untrained: these tests check plumbing and exactness, the CLI test trains one)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
import torch

from evaluators.tasks._loader import check_task
from evaluators.tasks.hf_causal import causal_lm_task
from evaluators.tasks.hf_causal_data import documents, split_documents
from evaluators.tasks.hf_causal_model import TiedHead, conv1d_to_linear
from spaces.cache import WeightCache
from spaces.deploy import to_onnx
from spaces.layers import compressible_layers
from spaces.structured import prunable_groups, prune_channels
from spaces.task import Task
from spaces.training import predict

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

N_LAYER = 4


def _corpus() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics)[:12])


def _gpt2(vocab: int) -> Any:
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=32, n_embd=32, n_layer=N_LAYER, n_head=4
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("hf-causal")
    text = _corpus()
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=160, special_tokens=["<|endoftext|>"], show_progress=False
    )
    bpe.train_from_iterator([text], trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>"
    )
    model = _gpt2(len(tokenizer))
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder


def _task(checkpoint: Path, tmp_path: Path, **options: Any) -> Task:
    return causal_lm_task(
        str(checkpoint / "model"),
        data=str(checkpoint / "corpus.txt"),
        kind="causal-lm",
        options={"block_size": 16, "max_train_blocks": 24, "max_eval_blocks": 6, **options},
        cache=WeightCache(tmp_path / "cache"),
    )


def test_conv1d_becomes_linear_computing_the_same_numbers() -> None:
    model = _gpt2(50)
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=ids, use_cache=False, return_dict=False)[0]
    assert conv1d_to_linear(model) == 4 * N_LAYER
    from transformers.pytorch_utils import Conv1D

    assert not any(isinstance(m, Conv1D) for m in model.modules())
    with torch.no_grad():
        after = model(input_ids=ids, use_cache=False, return_dict=False)[0]
    assert torch.equal(before, after)


def test_the_task_is_exact_tied_and_checked(checkpoint: Path, tmp_path: Path) -> None:
    task = _task(checkpoint, tmp_path)
    check_task(task, label="test")  # no weight shared by two compressible layers
    reference = transformers.GPT2LMHeadModel.from_pretrained(
        checkpoint / "model", attn_implementation="eager"
    ).eval()
    ids = task.val.inputs[0]
    with torch.no_grad():
        expected = reference(input_ids=ids, return_dict=False)[0]
    # the same numbers up to float rounding (the projections are nn.Linear instead of addmm)
    torch.testing.assert_close(predict(task.model, task.val), expected, atol=1e-5, rtol=1e-5)
    lm: Any = task.model.lm
    assert isinstance(lm.lm_head, TiedHead) and lm.lm_head.embedding is lm.transformer.wte
    weights = {k for k in task.model.state_dict() if k.endswith("weight")}
    assert not any("lm_head" in k for k in weights)  # the table is stored once
    assert task.kind == "causal-lm" and task.example_input[0].shape == (1, 16)
    assert task.metric(predict(task.model, task.test), task.test.targets) == pytest.approx(1.0)


def test_perplexity_column_is_exp_of_the_mean_next_token_loss(
    checkpoint: Path, tmp_path: Path
) -> None:
    task = _task(checkpoint, tmp_path)
    logits = predict(task.model, task.val).double()
    ids = task.val.targets
    nll = [
        -float(torch.log_softmax(logits[r, i], dim=0)[int(ids[r, i + 1])])
        for r in range(ids.shape[0])
        for i in range(ids.shape[1] - 1)
    ]
    expected = math.exp(sum(nll) / len(nll))
    got = task.extra_metrics["perplexity"](logits.float(), ids)
    assert got == pytest.approx(expected, rel=1e-5)


def test_a_student_keeps_k_blocks_copied_from_the_teacher(checkpoint: Path, tmp_path: Path) -> None:
    task = _task(checkpoint, tmp_path, students=[2])
    assert list(task.students) == ["L2"]
    student: Any = task.students["L2"]()
    teacher: Any = task.model
    assert len(student.lm.transformer.h) == 2 and len(teacher.lm.transformer.h) == N_LAYER
    for kept, source in zip(student.lm.transformer.h, (0, N_LAYER - 1), strict=True):
        got = kept.mlp.c_fc.weight
        assert torch.equal(got, teacher.lm.transformer.h[source].mlp.c_fc.weight)
    assert set(compressible_layers(student)) <= set(compressible_layers(teacher))
    assert student(task.example_input[0]).shape == task.model(task.example_input[0]).shape


def test_one_file_is_split_by_documents_none_in_two_splits() -> None:
    docs = documents(_corpus())
    assert len(docs) > 50 and all("\n\n" not in d for d in docs)
    splits = split_documents(docs, validation=0.1, test=0.2)
    sets = {k: set(v) for k, v in splits.items()}
    n_val, n_test = round(0.1 * len(docs)), round(0.2 * len(docs))
    assert (len(splits["val"]), len(splits["test"])) == (n_val, n_test)
    assert len(splits["train"]) == len(docs) - n_val - n_test
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sum(len(v) for v in splits.values()) == len(docs)
    assert split_documents(docs, validation=0.1, test=0.2) == splits  # seeded


def test_the_mlp_hidden_units_are_the_prunable_groups(checkpoint: Path, tmp_path: Path) -> None:
    task = _task(checkpoint, tmp_path)
    groups = prunable_groups(task.model, task.example_input)
    assert sorted(groups) == [f"lm.transformer.h.{i}.mlp.c_fc" for i in range(N_LAYER)]
    model = copy.deepcopy(task.model)
    kept = prune_channels(model, {"lm.transformer.h.1.mlp.c_fc": 0.5}, task.example_input)
    mlp: Any = model.lm.transformer.h[1].mlp
    assert kept == {"lm.transformer.h.1.mlp.c_fc": 64}
    assert mlp.c_fc.out_features == 64 and mlp.c_proj.in_features == 64
    assert model(task.example_input[0]).shape == task.model(task.example_input[0]).shape


def test_the_model_exports_to_onnx_computing_the_same_logits(
    checkpoint: Path, tmp_path: Path
) -> None:
    task = _task(checkpoint, tmp_path)
    data = to_onnx(task.model, task.example_input, int8=False)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ids = task.val.inputs[0]
    got = session.run(None, {"input": ids.numpy()})[0]
    torch.testing.assert_close(
        torch.from_numpy(got), predict(task.model, task.val), atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"block_size": 1}, "block_size"),
        ({"block_size": 1000}, "block_size"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "validation_fraction"),
        ({"students": [N_LAYER]}, "students"),
        ({"students": "L2"}, "students"),
        ({"max_eval_blocks": "many"}, "max_eval_blocks"),
        ({"batch_size": 0}, "batch_size"),
        ({"bloc_size": 16}, "bloc_size"),
    ],
)
def test_bad_options_name_their_key_in_one_line(
    checkpoint: Path, tmp_path: Path, options: dict[str, Any], key: str
) -> None:
    with pytest.raises(ValueError, match=rf"'task\.options\.{key}'") as info:
        _task(checkpoint, tmp_path, **options)
    assert "\n" not in str(info.value)


def test_bad_data_names_task_data(checkpoint: Path, tmp_path: Path) -> None:
    model = str(checkpoint / "model")
    cache = WeightCache(tmp_path / "cache")
    opts = {"block_size": 16}
    with pytest.raises(ValueError, match=r"'task\.data' = .*no such file"):
        causal_lm_task(model, data=str(tmp_path / "nope.txt"), options=opts, cache=cache)
    (tmp_path / "short.txt").write_text("one document\n\nand another", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'task\.data'"):
        causal_lm_task(model, data=str(tmp_path / "short.txt"), options=opts, cache=cache)
    with pytest.raises(ValueError, match=r"'task\.data' table lacks \['test'\]"):
        causal_lm_task(
            model,
            data={"train": str(tmp_path / "short.txt"), "validation": str(tmp_path / "short.txt")},
            options=opts,
            cache=cache,
        )


def test_a_table_of_files_gives_each_split_its_own_text(checkpoint: Path, tmp_path: Path) -> None:
    docs = documents(_corpus())
    parts = {"train": docs[:-20], "validation": docs[-20:-10], "test": docs[-10:]}
    data = {}
    for key, part in parts.items():
        (tmp_path / f"{key}.txt").write_text("\n\n".join(part), encoding="utf-8")
        data[key] = str(tmp_path / f"{key}.txt")
    task = causal_lm_task(
        str(checkpoint / "model"),
        data=data,
        options={"block_size": 16, "max_eval_blocks": 4},
        cache=WeightCache(tmp_path / "cache"),
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint / "model")
    first_test = tokenizer(parts["test"][0], add_special_tokens=False)["input_ids"][:16]
    assert task.test.targets[0].tolist()[: len(first_test)] == first_test
    assert len(task.val) == len(task.test) == 4
