import json
import os
import shutil
import threading

import numpy as np
import pytest
import torch

import qwenlib.data as data
from qwenlib import (ConfigError, PretrainingConfig, TextTokenDataset, load_and_cache_data,
                     make_dataloaders, split_tokens)

SMALL = dict(num_documents=20, max_tokens=4000, max_seq_len=64, batch_size=4)


# --- windows and the split -------------------------------------------------------

def test_windows_are_the_originals_with_stride_one():
    tokens = torch.arange(1000, 1100)
    ds = TextTokenDataset(tokens, seq_len=16)
    assert len(ds) == len(tokens) - 16
    for i in (0, 7, len(ds) - 1, -1):
        x, y = ds[i]
        start = i % len(ds)
        assert torch.equal(x, tokens[start:start + 16])
        assert torch.equal(y, tokens[start + 1:start + 17])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_strided_windows_score_each_token_once():
    ds = TextTokenDataset(np.arange(1 + 5 * 8), seq_len=8, stride=8)
    targets = torch.cat([ds[i][1] for i in range(len(ds))])
    assert torch.equal(targets, torch.arange(1, 1 + 5 * 8))


@pytest.mark.parametrize("tokens, error, words", [
    (torch.rand(100), TypeError, "integer ids"),
    (torch.zeros(10, 10, dtype=torch.long), ValueError, "1-D"),
    (list(range(16)), ValueError, "cannot fill one window"),
])
def test_dataset_rejects_bad_tokens(tokens, error, words):
    with pytest.raises(error, match=words):
        TextTokenDataset(tokens, seq_len=16)


@pytest.mark.parametrize("n, fraction, seq_len", [(50_000, 0.1, 256), (1001, 0.3, 7),
                                                  (600, 0.5, 32)])
def test_validation_tail_shares_no_position_with_any_training_window(n, fraction, seq_len):
    positions = torch.arange(n)  # ids equal to positions, so windows show where they read
    train, val = split_tokens(positions, fraction, seq_len)
    assert len(train) + len(val) == n
    assert abs(len(val) - n * fraction) <= 1
    train_windows = TextTokenDataset(train, seq_len)
    val_windows = TextTokenDataset(val, seq_len, stride=seq_len)
    read_in_training = set()
    for i in range(len(train_windows)):
        x, y = train_windows[i]
        read_in_training.update(x.tolist(), y.tolist())
    read_in_validation = set()
    for i in range(len(val_windows)):
        x, y = val_windows[i]
        read_in_validation.update(x.tolist(), y.tolist())
    assert not read_in_training & read_in_validation
    assert read_in_training | set(val.tolist()) == set(range(n))  # every head token is used


def test_split_too_small_says_how_much_is_needed():
    with pytest.raises(ValueError, match="raise max_tokens to at least 2570"):
        split_tokens(torch.arange(1000), 0.1, 256)


def test_dataloaders_from_config_hold_out_the_tail():
    config = PretrainingConfig(**SMALL)
    train_loader, val_loader = make_dataloaders(config, torch.arange(config.max_tokens))
    seen_in_training = torch.cat([torch.cat([x, y], 1) for x, y in train_loader])
    first_val = val_loader.dataset.tokens[0]
    assert seen_in_training.max() < first_val
    x, _ = next(iter(train_loader))
    assert x.shape == (config.batch_size, config.max_seq_len)


def test_training_order_is_shuffled_by_the_configs_seed():
    def first_batch(seed):
        config = PretrainingConfig(**SMALL, seed=seed)
        return next(iter(make_dataloaders(config, torch.arange(4000))[0]))[0]

    assert torch.equal(first_batch(42), first_batch(42))             # the same seed, the same order
    assert not torch.equal(first_batch(42), first_batch(43))         # the seed is used
    in_order = torch.stack([torch.arange(i, i + SMALL["max_seq_len"]) for i in range(SMALL["batch_size"])])
    assert not torch.equal(first_batch(42), in_order)                # and the windows are shuffled


# --- the built-in corpus, the cache, the fallback ---------------------------------

def test_default_config_gives_max_tokens_offline(offline, shared_cache, capsys):
    config = PretrainingConfig(cache_dir=str(shared_cache))
    texts, tokenizer, tokens = load_and_cache_data(config)
    assert "built-in corpus" in capsys.readouterr().out
    assert len(texts) == config.num_documents
    assert len(tokens) == config.max_tokens and tokens.dtype == np.int64
    assert len(tokenizer) == config.builtin_vocab_size
    assert 0 <= tokens.min() and tokens.max() < config.vocab_size


def test_documents_are_separated_by_eos(offline, shared_cache):
    config = PretrainingConfig(cache_dir=str(shared_cache), **SMALL)
    texts, tokenizer, tokens = load_and_cache_data(config, verbose=False)
    eos = tokenizer.eos_token_id
    ends = np.flatnonzero(tokens == eos)
    assert len(ends) >= 2
    first = tokenizer.decode(tokens[:ends[0]].tolist(), clean_up_tokenization_spaces=False)
    second = tokenizer.decode(tokens[ends[0] + 1:ends[1]].tolist(),
                              clean_up_tokenization_spaces=False)
    assert (first, second) == (texts[0], texts[1])


def test_cache_round_trip_returns_identical_ids_and_tokenizer(offline, tmp_path, capsys):
    config = PretrainingConfig(cache_dir=str(tmp_path), **SMALL)
    texts1, tok1, ids1 = load_and_cache_data(config)
    assert "cached in" in capsys.readouterr().out
    texts2, tok2, ids2 = load_and_cache_data(config)
    assert "read from" in capsys.readouterr().out
    assert texts1 == texts2 and np.array_equal(ids1, ids2)
    assert tok1.backend_tokenizer.to_str() == tok2.backend_tokenizer.to_str()
    assert tok1.eos_token_id == tok2.eos_token_id


def test_changing_max_tokens_misses_the_cache(offline, tmp_path, capsys):
    load_and_cache_data(PretrainingConfig(cache_dir=str(tmp_path), **SMALL))
    capsys.readouterr()
    bigger = PretrainingConfig(cache_dir=str(tmp_path), **{**SMALL, "max_tokens": 5000})
    _, _, tokens = load_and_cache_data(bigger)
    assert "cached in" in capsys.readouterr().out
    assert len(tokens) == 5000
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_holds_no_pickle(offline, tmp_path):
    config = PretrainingConfig(cache_dir=str(tmp_path), **SMALL)
    load_and_cache_data(config, verbose=False)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".npy", ".json"}
    folder = data.cache_path(config, "builtin")
    np.load(folder / "tokens.npy", allow_pickle=False)  # would raise on an object array
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["num_tokens"] == config.max_tokens


def test_damaged_cache_is_rebuilt_not_trusted(offline, tmp_path, capsys):
    config = PretrainingConfig(cache_dir=str(tmp_path), **SMALL)
    _, _, good = load_and_cache_data(config, verbose=False)
    npy = data.cache_path(config, "builtin") / "tokens.npy"
    npy.write_bytes(npy.read_bytes()[:100])  # a truncated file
    _, _, again = load_and_cache_data(config)
    assert "is unusable" in capsys.readouterr().out
    assert np.array_equal(good, again)


def test_a_cache_entry_that_is_a_pipe_or_a_dangling_link_is_rebuilt(offline, tmp_path, capsys):
    config = PretrainingConfig(cache_dir=str(tmp_path), **SMALL)
    _, _, good = load_and_cache_data(config, verbose=False)
    folder = data.cache_path(config, "builtin")
    (folder / "tokens.npy").unlink()
    os.mkfifo(folder / "tokens.npy")  # np.load would wait for a writer forever
    result = []
    worker = threading.Thread(target=lambda: result.append(load_and_cache_data(config)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # blocked on the pipe: a writer frees it, then fail
        os.close(os.open(folder / "tokens.npy", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading the cache blocked on a FIFO")
    assert "tokens.npy is not a regular file" in capsys.readouterr().out
    assert np.array_equal(good, result[0][2])
    shutil.rmtree(folder)
    folder.symlink_to(tmp_path / "gone")  # a link to nothing where the cache was
    _, _, again = load_and_cache_data(config, verbose=False)
    assert folder.is_dir() and not folder.is_symlink() and np.array_equal(good, again)


def test_fallback_when_hub_is_unreachable_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    texts, _, tokens = load_and_cache_data(PretrainingConfig(cache_dir=str(tmp_path),
                                                             data_source="auto", **SMALL))
    line = capsys.readouterr().out
    assert "built-in corpus" in line and "because 127.0.0.1 is unreachable" in line
    assert len(tokens) == SMALL["max_tokens"]


def test_fallback_when_hub_download_fails_says_why(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(data, "hub_unreachable_reason", lambda timeout=3.0: None)

    def failing_download(config):
        raise ConnectionError("Couldn't reach 'HuggingFaceTB/smollm-corpus' on the Hub")

    monkeypatch.setattr(data, "load_hub_documents", failing_download)
    load_and_cache_data(PretrainingConfig(cache_dir=str(tmp_path), data_source="auto", **SMALL))
    line = capsys.readouterr().out
    assert "because the Hub failed (ConnectionError: Couldn't reach" in line


def test_the_builtin_corpus_is_the_default_with_or_without_a_network(monkeypatch):
    """What the book shows is what every reader gets: no network probe decides the data."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(data, "hub_unreachable_reason", lambda timeout=3.0: None)  # "online"
    assert data.choose_source(PretrainingConfig())[0] == "builtin"
    assert data.choose_source(PretrainingConfig(data_source="auto")) == ("hub", "the Hub is reachable")


def test_offline_env_selects_builtin_and_hub_only_refuses(offline, tmp_path):
    assert data.choose_source(PretrainingConfig(data_source="auto")) == \
        ("builtin", "HF_HUB_OFFLINE=1 is set")
    with pytest.raises(ConnectionError, match="data_source='hub' but HF_HUB_OFFLINE=1 is set"):
        load_and_cache_data(PretrainingConfig(cache_dir=str(tmp_path), data_source="hub"))


# --- the Hub code path, on local folders ----------------------------------------

@pytest.fixture
def local_hub(tmp_path):
    """A dataset folder laid out like smollm-corpus (a README declaring the
    cosmopedia-v2 config) and a tokenizer saved with save_pretrained."""
    corpus = tmp_path / "smollm-corpus"
    (corpus / "cosmopedia-v2").mkdir(parents=True)
    (corpus / "README.md").write_text(
        "---\nconfigs:\n- config_name: cosmopedia-v2\n  data_files:\n  - split: train\n"
        "    path: cosmopedia-v2/*.jsonl\n---\n")
    texts = [f"Textbook {i}: the {'quick ' * (i % 5)}brown fox number {i} jumps. " * 12
             for i in range(30)]
    with open(corpus / "cosmopedia-v2" / "train-00000.jsonl", "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "audience": "students"}) + "\n")
    tokenizer_dir = tmp_path / "tokenizer"
    data.train_bpe_tokenizer(texts, 400).save_pretrained(str(tokenizer_dir))
    return corpus, tokenizer_dir, texts


def test_hub_path_works_on_local_folders_without_network(offline, local_hub, tmp_path, capsys):
    corpus, tokenizer_dir, texts = local_hub
    config = PretrainingConfig(data_source="hub", dataset_name=str(corpus), dataset_config="cosmopedia-v2",
                               tokenizer_name=str(tokenizer_dir), cache_dir=str(tmp_path / "c"),
                               num_documents=25, max_tokens=3000, max_seq_len=32)
    got_texts, tokenizer, tokens = load_and_cache_data(config)
    line = capsys.readouterr().out
    assert f"data: {corpus} (cosmopedia-v2)" in line and "local folders" in line
    assert got_texts == texts[:25]
    expected = []
    for t in texts[:25]:
        expected += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokens.tolist() == expected[:3000]
    assert data.cache_path(config, "hub").name.startswith("hub-25docs-3000tokens-")


def test_empty_corpus_is_a_clear_error(offline, local_hub, tmp_path):
    corpus, tokenizer_dir, _ = local_hub
    with open(corpus / "cosmopedia-v2" / "train-00000.jsonl", "w") as f:
        for _ in range(3):
            f.write(json.dumps({"text": "   "}) + "\n")
    config = PretrainingConfig(data_source="hub", dataset_name=str(corpus), tokenizer_name=str(tokenizer_dir),
                               cache_dir=str(tmp_path / "c"), max_seq_len=32, max_tokens=300)
    with pytest.raises(ValueError, match="the corpus gave no text"):
        load_and_cache_data(config)


def test_tokenizer_larger_than_the_embedding_is_refused(offline, local_hub, tmp_path):
    corpus, tokenizer_dir, _ = local_hub
    size = len(json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
    assert size > 300
    config = PretrainingConfig(data_source="hub", dataset_name=str(corpus), tokenizer_name=str(tokenizer_dir),
                               cache_dir=str(tmp_path / "c"), max_seq_len=32, max_tokens=300,
                               vocab_size=300, builtin_vocab_size=300)
    with pytest.raises(ValueError, match=f"has {size} tokens but vocab_size=300; "
                                         f"set vocab_size to at least {size}"):
        load_and_cache_data(config)


def test_builtin_tokenizer_larger_than_the_embedding_is_refused(offline, tmp_path):
    config = PretrainingConfig(cache_dir=str(tmp_path), vocab_size=1000, **SMALL)
    with pytest.raises(ValueError, match="builtin_vocab_size=8,192 exceeds vocab_size=1,000"):
        load_and_cache_data(config)


def test_bad_sizes_fail_before_any_work():
    with pytest.raises(ConfigError, match="num_documents"):
        PretrainingConfig(num_documents=0)
    with pytest.raises(ConfigError, match="smaller than one training window"):
        PretrainingConfig(max_tokens=200)


def test_the_cached_tokenizer_loads_in_transformers_4_and_5(offline, tmp_path):
    """The cache (and `train`'s models/tokenizer/) keep a tokenizer_config.json that every
    transformers the course supports reads: no `TokenizersBackend` class (5.x only), no
    record of how this process loaded it. Under `make test-floors`, 4.51 loads it here."""
    import transformers
    config = PretrainingConfig(cache_dir=str(tmp_path), **SMALL)
    load_and_cache_data(config, verbose=False)
    folder = data.cache_path(config, "builtin") / "tokenizer"
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    assert settings["tokenizer_class"] != "TokenizersBackend"
    assert "local_files_only" not in settings
    again = transformers.AutoTokenizer.from_pretrained(folder)
    assert again("def f(x): return 42")["input_ids"] == \
        load_and_cache_data(config, verbose=False)[1]("def f(x): return 42")["input_ids"]


def test_too_few_documents_for_a_window_asks_for_documents_not_max_tokens(offline, tmp_path):
    """With 20 documents the corpus ends long before max_tokens=400,000: raising max_tokens
    (already 400,000) would change nothing."""
    config = PretrainingConfig(cache_dir=str(tmp_path), num_documents=20, max_tokens=400_000,
                               max_seq_len=30_000)
    _, _, tokens = load_and_cache_data(config, verbose=False)
    assert len(tokens) < config.max_tokens
    with pytest.raises(ValueError, match=r"raise num_documents \(its 20 documents give .* fewer "
                                         r"than max_tokens=400,000\), or lower max_seq_len"):
        make_dataloaders(config, tokens)
    enough = PretrainingConfig(cache_dir=str(tmp_path), num_documents=20, max_tokens=3000,
                               max_seq_len=2000)
    with pytest.raises(ValueError, match="raise max_tokens to at least"):
        make_dataloaders(enough, load_and_cache_data(enough, verbose=False)[2])


def test_windows_at_the_edges_of_what_they_accept():
    assert len(TextTokenDataset(list(range(9)), 8)) == 1          # seq_len + 1 tokens: one window
    assert len(TextTokenDataset(np.arange(5), 1)) == 4
    windows = TextTokenDataset(torch.arange(20), 4, stride=4)
    assert [x[0].item() for x, _ in (windows[-len(windows)], windows[-1])] == [0, 12]
    with pytest.raises(IndexError, match=r"^window 4 out of range for 4 windows$"):
        windows[4]
    for tokens, seq_len, stride, error, message in [
            (list(range(9)), 9, 1, ValueError, "9 tokens cannot fill one window of seq_len=9 (it "
             "needs seq_len + 1 = 10: inputs plus the shifted target); use more tokens or a "
             "shorter seq_len"),
            (list(range(9)), 0, 1, ValueError, "seq_len and stride must be positive, got 0 and 1"),
            (list(range(9)), 2, 0, ValueError, "seq_len and stride must be positive, got 2 and 0"),
            (torch.ones(9, dtype=torch.bool), 2, 1, TypeError, "tokens must be integer ids, got "
             "dtype torch.bool")]:
        with pytest.raises(error) as err:
            TextTokenDataset(tokens, seq_len, stride)
        assert str(err.value) == message


def test_the_split_takes_val_fractions_strictly_between_0_and_1_and_parts_of_one_window():
    tokens = np.arange(100)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"^val_fraction must lie in \(0, 1\), got {bad}$"):
            data.split_tokens(tokens, bad, 8)
    train, val = data.split_tokens(tokens, 0.09, 8)               # 91 / 9: the tail is one window
    assert (len(train), len(val)) == (91, 9)
    train, val = data.split_tokens(tokens, 0.91, 8)               # 9 / 91: so is the head
    assert (len(train), len(val)) == (9, 91)
    with pytest.raises(ValueError) as err:
        data.split_tokens(tokens, 0.05, 8)
    assert str(err.value) == ("100 tokens split 95 / 5 (val_fraction=0.05) leave a part shorter "
                              "than one window of 9 tokens (max_seq_len + 1); raise max_tokens "
                              "to at least 180 or change val_fraction")
    with pytest.raises(ValueError, match=r"split 5 / 95 .* to at least 180 or change"):
        data.split_tokens(tokens, 0.95, 8)                        # the head is the short part


def test_make_dataloaders_refuses_what_cannot_work_with_the_setting_to_change():
    config = PretrainingConfig(vocab_size=300, builtin_vocab_size=300, max_seq_len=8, batch_size=4,
                               max_tokens=200, num_documents=20)
    tokens = np.arange(200) % 300
    data.make_dataloaders(config, np.where(tokens == 7, 299, tokens))   # the last id, 299, is fine
    with pytest.raises(ConfigError) as err:
        data.make_dataloaders(config, np.where(tokens == 7, 300, tokens))
    assert (err.value.field, err.value.value) == ("vocab_size", 300)
    assert err.value.rule.startswith("the token ids go up to 300")
    assert str(err.value) == ("vocab_size=300: the token ids go up to 300, but the model has rows "
                              "for ids below vocab_size only; set vocab_size to at least the "
                              "tokenizer's size (len(tokenizer))")
    short = np.arange(15)                                         # fewer than max_tokens
    with pytest.raises(ValueError) as err:
        data.make_dataloaders(config, short)
    assert str(err.value) == ("15 tokens split 13 / 2 (val_fraction=0.1) leave a part shorter than "
                              "one window of 9 tokens (max_seq_len + 1); raise num_documents (its 20 "
                              "documents give 15 tokens, fewer than max_tokens=200), or lower "
                              "max_seq_len")
    exact = PretrainingConfig(**{**config.to_dict(), "batch_size": 12, "max_tokens": 40,
                                 "val_fraction": 0.5})
    data.make_dataloaders(exact, np.arange(40))                   # 12 windows, one batch of 12
    with pytest.raises(ConfigError) as err:
        data.make_dataloaders(PretrainingConfig(**{**exact.to_dict(), "batch_size": 13}), np.arange(40))
    assert (err.value.field, err.value.value) == ("batch_size", 13)
    assert err.value.rule == "12 training windows cannot fill one batch; raise max_tokens or lower batch_size"
    assert str(err.value) == ("batch_size=13: 12 training windows cannot fill one batch; raise "
                              "max_tokens or lower batch_size")
    with pytest.raises(ValueError, match="0 tokens split 0 / 0"):
        data.make_dataloaders(config, np.array([], dtype=np.int64))   # nothing: the split says so


def test_training_batches_are_full_and_validation_reads_the_tail_in_order_once():
    config = PretrainingConfig(vocab_size=300, builtin_vocab_size=300, max_seq_len=8, batch_size=5,
                               max_tokens=200, num_documents=20, val_fraction=0.5)
    train, val = data.make_dataloaders(config, np.arange(200))
    assert {len(x) for x, _ in train} == {5} and len(train) == 92 // 5    # the partial one dropped
    val_x = torch.cat([x for x, _ in val])
    assert val_x.shape == (12, 8) and len(next(iter(val))[0]) == 5         # batches, not items
    assert torch.equal(val_x.flatten(), torch.arange(100, 196))           # in order, each once
