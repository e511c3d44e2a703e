"""from_pretrained reads as strictly as `safetensors` itself: a file the safetensors package
refuses is refused with one ValueError naming the file, never loaded as wrong weights; the
files read are the ones transformers reads; pipes and devices are refused before opening.
Every malformed file is tried on both read paths: straight into the parameters (`dtype=None`,
the stored dtype) and through a conversion (`bfloat16`)."""

import json
import os
import re
import shutil
import threading
import tracemalloc

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import random_gains
from qwenlib import MinimalLLM, PretrainingConfig, from_pretrained, save_hf
from qwenlib.data import train_bpe_tokenizer
from qwenlib.hf import _load_safetensors, _safetensors_header  # noqa

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SMALL = dict(vocab_size=320, d_model=16, n_heads=2, n_kv_heads=1, d_ff=32, n_layers=1,
             max_seq_len=32, rope_theta=1e6)


def randomised(tied: bool, seed: int = 0) -> MinimalLLM:
    torch.manual_seed(seed)
    return random_gains(MinimalLLM(PretrainingConfig(**SMALL, tie_word_embeddings=tied)))


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(["safetensors files hold tensors and a JSON header"] * 4, 300)


@pytest.fixture(scope="module")
def _export(tmp_path_factory, tokenizer):
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = randomised(tied=False)
    return save_hf(model, tokenizer, tmp_path_factory.mktemp("export") / "export"), model


@pytest.fixture
def folder(_export, tmp_path, offline):
    """A copy of an export of an untied model (save_hf), and the model it came from."""
    path, model = _export
    return shutil.copytree(path, tmp_path / "export"), model


def parts(path):
    """(header as a dict, in file order, the tensor bytes) of a safetensors file."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def write(path, header, data: bytes, pad: int = 0, length_delta: int = 0, text: str | None = None):
    """A safetensors file with `pad` spaces after the JSON (the format allows them) and a
    length field `length_delta` bytes off the header's true length."""
    body = (text if text is not None else json.dumps(header)).encode() + b" " * pad
    path.write_bytes((len(body) + length_delta).to_bytes(8, "little") + body + data)


def same_size_pair(header):
    """Two tensors of the same byte size (q_norm and k_norm: head_dim each)."""
    return "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight"


def _shift(header, data, name, by):
    header[name]["data_offsets"] = [o + by for o in header[name]["data_offsets"]]
    return header, data


MALFORMED = {
    "length 1 byte short, inside the padding": lambda h, d: dict(header=h, data=d, pad=6, length_delta=-1),
    "length 5 bytes short, inside the padding": lambda h, d: dict(header=h, data=d, pad=6, length_delta=-5),
    "a tensor's offsets equal another's": lambda h, d: dict(
        header={**h, same_size_pair(h)[1]: {**h[same_size_pair(h)[1]],
                                            "data_offsets": h[same_size_pair(h)[0]]["data_offsets"]}},
        data=d),
    "a tensor's offsets shifted by 4 bytes": lambda h, d: dict(
        header=_shift(json.loads(json.dumps(h)), d, same_size_pair(h)[0], 4)[0], data=d),
    "a negative begin": lambda h, d: dict(
        header={**h, same_size_pair(h)[0]: {**h[same_size_pair(h)[0]], "data_offsets": [-8, 56]}},
        data=d),
    "a tensor named twice, the second time on another's bytes": lambda h, d: dict(
        header=h, data=d, text=json.dumps(h)[:-1] + ", " + json.dumps(same_size_pair(h)[0]) + ": "
        + json.dumps(h[same_size_pair(h)[1]]) + "}"),
    "header length 2**33": lambda h, d: dict(header=h, data=d, length_delta=2**33),
    "header length 2**40": lambda h, d: dict(header=h, data=d, length_delta=2**40),
    "header a JSON list": lambda h, d: dict(header=h, data=d, text="[1, 2, 3]"),
    "header not JSON": lambda h, d: dict(header=h, data=d, text="{not json"),
    "header not UTF-8": lambda h, d: dict(header=h, data=d, text="{\udcff}"),
    "an unknown dtype": lambda h, d: dict(
        header={**h, same_size_pair(h)[0]: {**h[same_size_pair(h)[0]], "dtype": "Q7"}}, data=d),
    "a shape that disagrees with its bytes": lambda h, d: dict(
        header={**h, same_size_pair(h)[0]: {**h[same_size_pair(h)[0]], "shape": [999]}}, data=d),
    "the data cut short": lambda h, d: dict(header=h, data=d[:-10]),
    "bytes after the last tensor": lambda h, d: dict(header=h, data=d + bytes(16)),
}


def _write_malformed(path, case):
    header, data = parts(path)
    spec = MALFORMED[case](header, data)
    text = spec.pop("text", None)
    if text is not None and "\udcff" in text:
        body = b'{"\xff\xfe": 1}'
        path.write_bytes(len(body).to_bytes(8, "little") + body + spec["data"])
        return
    write(path, text=text, **spec)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["stored dtype", "bf16"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_file_safetensors_refuses_is_refused_naming_the_file(folder, case, dtype):
    path = folder[0] / "model.safetensors"
    _write_malformed(path, case)
    with pytest.raises(Exception):
        load_file(path)  # the reference refuses it: so must we
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=re.escape(str(path))):
            from_pretrained(folder[0], dtype=dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse a small file"


def test_a_name_given_twice_is_refused_even_where_safetensors_keeps_the_last(folder):
    path = folder[0] / "model.safetensors"
    header, data = parts(path)
    name = same_size_pair(header)[0]
    write(path, header, data, text=json.dumps(header)[:-1] + f", {json.dumps(name)}: "
          + json.dumps(header[name]) + "}")  # the same entry again: the file reads the same
    with pytest.raises(ValueError, match=f"names tensor {re.escape(repr(name))} twice"):
        from_pretrained(folder[0])


def test_only_model_safetensors_is_read_not_a_stale_copy_beside_it(folder):
    path, model = folder
    other = randomised(tied=False, seed=1)
    save_file({"model." + k: v for k, v in other.state_dict().items() if k != "lm_head.weight"}
              | {"lm_head.weight": other.lm_head.weight.detach()}, path / "model_v0.safetensors")
    loaded = from_pretrained(path)[0]
    for name, weight in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name


def test_a_folder_with_only_other_safetensors_files_is_ambiguous(folder):
    path, _ = folder
    (path / "model.safetensors").rename(path / "weights.safetensors")
    with pytest.raises(ValueError, match="weights.safetensors but neither model.safetensors"):
        from_pretrained(path)


def test_sharded_weights_load_through_their_index_and_a_bad_index_is_refused(folder):
    path, model = folder
    tensors = load_file(path / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, path / shard, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    # model.safetensors now holds other weights: the index decides, as in transformers
    other = randomised(tied=False, seed=1)
    save_file({"model." + k if k != "lm_head.weight" else k: v for k, v in other.state_dict().items()},
              path / "model.safetensors")
    loaded = from_pretrained(path)[0]
    for name, weight in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors: no such"):
        from_pretrained(path)
    index["weight_map"][names[0]] = "../elsewhere.safetensors"
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="must name files in the same folder"):
        from_pretrained(path)


def test_a_tied_model_keeps_its_embedding_when_the_file_also_stores_an_output_layer(
        tmp_path, tokenizer, offline):
    import transformers

    model = randomised(tied=True)
    path = save_hf(model, tokenizer, tmp_path / "tied")
    tensors = load_file(path / "model.safetensors")
    tensors["lm_head.weight"] = torch.randn_like(tensors["model.embed_tokens.weight"])
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    loaded = from_pretrained(path)[0]
    assert loaded.lm_head.weight is loaded.embed_tokens.weight
    assert torch.equal(loaded.embed_tokens.weight, model.embed_tokens.weight)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path)
    assert torch.equal(theirs.get_input_embeddings().weight, model.embed_tokens.weight)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_pipe_in_the_folder_is_refused_without_blocking(folder, name):
    path = folder[0] / name
    path.unlink()
    os.mkfifo(path)
    outcome = []

    def load():
        try:
            from_pretrained(folder[0])
        except Exception as e:  # noqa: BLE001 - the test inspects it below
            outcome.append(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # a reader blocked on the pipe: open it for writing to free it
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("from_pretrained blocked on a FIFO")
    assert isinstance(outcome[0], ValueError) and "is not a regular file" in str(outcome[0])


# --- property: mutate a valid file at random --------------------------------------

@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    model = randomised(tied=True)
    tensors = {"model." + k: v.contiguous() for k, v in model.state_dict().items()
               if k != "lm_head.weight"}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return (folder / "model.safetensors").read_bytes()


mutation = st.one_of(
    st.tuples(st.just("byte"), st.integers(0, 600), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 4000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 600), st.integers(0, 255)),
    st.tuples(st.just("length"), st.integers(-16, 16), st.just(0)),
)


def mutate(raw: bytes, steps) -> bytes:
    data = bytearray(raw)
    for kind, where, value in steps:
        if kind == "byte" and where < len(data):
            data[where] = value
        elif kind == "cut":
            del data[min(where, len(data)):]
        elif kind == "insert":
            data[where:where] = bytes([value])
        elif kind == "length" and len(data) >= 8:
            length = max(0, int.from_bytes(data[:8], "little") + where)
            data[:8] = length.to_bytes(8, "little")
    return bytes(data)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(mutation, min_size=1, max_size=3), bf16=st.booleans())
def test_a_mutated_file_loads_what_safetensors_loads_or_is_refused_by_name(
        valid_file, tmp_path_factory, steps, bf16):
    folder = tmp_path_factory.mktemp("mutated")
    path = folder / "model.safetensors"
    path.write_bytes(mutate(valid_file, steps))
    try:
        reference = load_file(path)
    except Exception:  # noqa: BLE001 - any refusal of the reference
        reference = None
    model = MinimalLLM(PretrainingConfig(**SMALL, tie_word_embeddings=True))
    if bf16:
        model = model.to(torch.bfloat16)
    try:
        _load_safetensors(model, folder)
    except (ValueError, FileNotFoundError) as e:
        assert str(folder) in str(e), f"the refusal names neither the file nor its folder: {e}"
        return
    assert reference is not None, "loaded a file that safetensors refuses"
    state = model.state_dict()
    for key, tensor in reference.items():
        name = key.removeprefix("model.")
        assert torch.equal(state[name], tensor.to(state[name].dtype)), name
    shutil.rmtree(folder)


def test_the_header_is_refused_before_any_large_read(tmp_path):
    path = tmp_path / "model.safetensors"
    write(path, {}, b"", length_delta=2**34)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="not a valid safetensors file"):
            _safetensors_header(path)
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
