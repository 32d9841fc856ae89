"""Opening pools: what a valid pool exposes, and every way a bad one is refused."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from merger import CheckpointPool, PoolError, within_roots
from merger_fixtures import save_raw, spec_of


def test_hf_dirs(gpt2_dirs):
    with CheckpointPool.open(spec_of(gpt2_dirs, ["a", "b", "c"])) as pool:
        assert pool.names == ["a", "b", "c"]
        on_disk = load_file(str(gpt2_dirs[1] / "model.safetensors"))
        assert pool.tensor_names == sorted(on_disk)
        assert "lm_head.weight" not in pool.tensor_names  # tied: not on disk, not merged
        name = "transformer.h.0.attn.c_attn.weight"
        assert pool.shape(name) == torch.Size([32, 96])
        assert pool.dtype(name) == torch.float32
        assert torch.equal(pool.tensor(1, name), on_disk[name])
        assert pool.nbytes == sum(t.nbytes for t in on_disk.values())
        assert pool.config_dir == gpt2_dirs[0].resolve()
        assert pool.to_device("cpu") is pool
        assert pool.tensor(0, name) is pool.tensor(0, name)  # the same view every call: no copies


def test_sharded_dirs(gpt2_sharded_dirs):
    files = sorted(p.name for p in gpt2_sharded_dirs[0].glob("*.safetensors"))
    assert len(files) > 2, "fixture should be sharded"
    with CheckpointPool.open(spec_of(gpt2_sharded_dirs)) as pool:
        expected = {}
        for f in files:
            expected.update(load_file(str(gpt2_sharded_dirs[2] / f)))
        assert pool.tensor_names == sorted(expected)
        for name, t in expected.items():
            assert torch.equal(pool.tensor(2, name), t)


def test_single_files(raw_files):
    with CheckpointPool.open(spec_of(raw_files)) as pool:
        assert pool.config_dir is None
        assert pool.dtype("steps") == torch.int64 and pool.dtype("half") == torch.float16
        assert pool.shape("scalar") == torch.Size([])
        assert pool.float_dtype == torch.float32


def test_closed_pool_refuses_tensors(raw_files):
    pool = CheckpointPool.open(spec_of(raw_files[:2]))
    kept = pool.tensor(0, "w")
    pool.close()
    with pytest.raises(PoolError, match="closed"):
        pool.tensor(0, "w")
    assert kept.sum().isfinite()  # a view taken before close stays valid


# -- incompatible checkpoints ----------------------------------------------------


def test_missing_tensor(tmp_path, raw_files):
    t = load_file(str(raw_files[0]))
    del t["b"]
    odd = save_raw(tmp_path / "odd.safetensors", t)
    with pytest.raises(PoolError, match=r"checkpoint 'odd' lacks tensor 'b' that 'c0' has"):
        CheckpointPool.open(spec_of([raw_files[0], odd], ["c0", "odd"]))


def test_extra_tensor(tmp_path, raw_files):
    t = load_file(str(raw_files[0]))
    t["zzz"] = torch.zeros(2)
    odd = save_raw(tmp_path / "odd.safetensors", t)
    with pytest.raises(PoolError, match=r"checkpoint 'odd' has tensor 'zzz' that 'c0' lacks"):
        CheckpointPool.open(spec_of([raw_files[0], odd], ["c0", "odd"]))


def test_renamed_tensor(tmp_path, raw_files):
    t = load_file(str(raw_files[0]))
    t["w2"] = t.pop("w")
    odd = save_raw(tmp_path / "odd.safetensors", t)
    with pytest.raises(PoolError, match=r"checkpoint 'odd' lacks tensor 'w'"):
        CheckpointPool.open(spec_of([raw_files[0], raw_files[1], odd], ["c0", "c1", "odd"]))


def test_shape_mismatch(tmp_path, raw_files):
    t = load_file(str(raw_files[0]))
    t["w"] = torch.zeros(64, 47)
    odd = save_raw(tmp_path / "odd.safetensors", t)
    with pytest.raises(PoolError, match=r"checkpoint 'odd': tensor 'w' has shape \[64, 47\], expected \[64, 48\] as in 'c0'"):
        CheckpointPool.open(spec_of([raw_files[0], odd], ["c0", "odd"]))


def test_dtype_mismatch(tmp_path, raw_files):
    t = load_file(str(raw_files[0]))
    t["b"] = t["b"].bfloat16()
    odd = save_raw(tmp_path / "odd.safetensors", t)
    with pytest.raises(PoolError, match=r"checkpoint 'odd': tensor 'b' has dtype BF16, expected F32 as in 'c0'"):
        CheckpointPool.open(spec_of([raw_files[0], odd], ["c0", "odd"]))


def test_gpt2_of_another_width_is_refused(tmp_path, gpt2_dirs):
    import transformers

    other = tmp_path / "wide"
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=300, n_positions=64, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(other)
    with pytest.raises(PoolError, match=r"checkpoint 'wide': tensor 'transformer.h.0.attn.c_attn.bias' has shape \[192\]"):
        CheckpointPool.open(spec_of([gpt2_dirs[0], other], ["base", "wide"]))


# -- files that are missing, corrupt or unsafe -----------------------------------


def test_missing_path(tmp_path, raw_files):
    with pytest.raises(PoolError, match=r"checkpoint 'c1': path .*nope does not exist"):
        CheckpointPool.open(spec_of([raw_files[0], tmp_path / "nope"]))


def test_missing_shard(tmp_path, gpt2_sharded_dirs):
    broken = shutil.copytree(gpt2_sharded_dirs[1], tmp_path / "broken")
    victim = sorted(broken.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(PoolError, match=rf"checkpoint 'c1': shard {victim.name} listed in model.safetensors.index.json is missing"):
        CheckpointPool.open(spec_of([gpt2_sharded_dirs[0], broken]))


def test_index_pointing_outside_the_directory(tmp_path, gpt2_sharded_dirs):
    broken = shutil.copytree(gpt2_sharded_dirs[0], tmp_path / "broken")
    index_path = broken / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name = next(iter(index["weight_map"]))
    index["weight_map"][name] = "../elsewhere.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(PoolError, match="not a file in the directory"):
        CheckpointPool.open(spec_of([broken]))


def test_index_disagreeing_with_shards(tmp_path, gpt2_sharded_dirs):
    broken = shutil.copytree(gpt2_sharded_dirs[0], tmp_path / "broken")
    index_path = broken / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost.weight"] = next(iter(index["weight_map"].values()))
    index_path.write_text(json.dumps(index))
    with pytest.raises(PoolError, match=r"tensor 'ghost.weight' is listed in model.safetensors.index.json but missing"):
        CheckpointPool.open(spec_of([broken]))


def test_truncated_file(tmp_path, raw_files):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw_files[1].read_bytes()[:-100])
    with pytest.raises(PoolError, match=rf"checkpoint 'c1': {cut}: tensor .* run past .* truncated"):
        CheckpointPool.open(spec_of([raw_files[0], cut]))


def test_garbage_file(tmp_path, raw_files):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{{{{{")
    with pytest.raises(PoolError, match="checkpoint 'c1': .*junk.safetensors: header is not valid JSON"):
        CheckpointPool.open(spec_of([raw_files[0], junk]))


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
def test_pickled_file_is_refused(tmp_path, raw_files, suffix):
    pickled = tmp_path / f"model{suffix}"
    pickled.write_bytes(b"not even opened")
    with pytest.raises(PoolError, match=r"checkpoint 'c1': .* pickled checkpoint, refused: unpickling can run arbitrary code\. Convert it to safetensors"):
        CheckpointPool.open(spec_of([raw_files[0], pickled]))


def test_pickled_dir_is_refused(tmp_path, raw_files):
    old = tmp_path / "old-model"
    old.mkdir()
    (old / "config.json").write_text("{}")
    (old / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(PoolError, match=r"pytorch_model.bin is a pickled checkpoint.*arbitrary code.*safetensors"):
        CheckpointPool.open(spec_of([raw_files[0], old]))


def test_dir_without_weights(tmp_path, raw_files):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolError, match="holds neither model.safetensors nor model.safetensors.index.json"):
        CheckpointPool.open(spec_of([raw_files[0], tmp_path / "empty"]))


def test_non_safetensors_file(tmp_path, raw_files):
    other = tmp_path / "weights.npz"
    other.write_bytes(b"PK")
    with pytest.raises(PoolError, match="not a .safetensors file"):
        CheckpointPool.open(spec_of([raw_files[0], other]))


# -- allowed roots ---------------------------------------------------------------


def test_inside_allowed_root(tmp_path, raw_files):
    root = raw_files[0].parent
    with CheckpointPool.open(spec_of(raw_files), allowed_roots=[tmp_path, root]) as pool:
        assert len(pool) == 4


def test_outside_allowed_roots(tmp_path, raw_files):
    with pytest.raises(PoolError, match=r"checkpoint 'c0': .* outside the allowed roots"):
        CheckpointPool.open(spec_of(raw_files), allowed_roots=[tmp_path])


def test_symlinked_checkpoint_escaping_root(tmp_path, gpt2_dirs):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(gpt2_dirs[1], root / "sneaky")
    with pytest.raises(PoolError, match=rf"checkpoint 'c0': {root / 'sneaky'} resolves to .*, outside the allowed roots"):
        CheckpointPool.open(spec_of([root / "sneaky"]), allowed_roots=[root])


def test_symlinked_file_inside_checkpoint_escaping_root(tmp_path, gpt2_dirs):
    root = tmp_path / "root"
    ckpt = root / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text((gpt2_dirs[0] / "config.json").read_text())
    os.symlink(gpt2_dirs[0] / "model.safetensors", ckpt / "model.safetensors")
    with pytest.raises(PoolError, match=r"model.safetensors resolves to .*, outside the allowed roots"):
        CheckpointPool.open(spec_of([ckpt]), allowed_roots=[root])
    # Without roots, the same layout is fine.
    with CheckpointPool.open(spec_of([ckpt])) as pool:
        assert len(pool) == 1


def test_symlink_within_root_is_fine(tmp_path, raw_files):
    root = tmp_path / "root"
    root.mkdir()
    real = save_raw(root / "real" / "m.safetensors", load_file(str(raw_files[0])))
    os.symlink(real, root / "alias.safetensors")
    with CheckpointPool.open(spec_of([root / "alias.safetensors"]), allowed_roots=[root]) as pool:
        assert torch.equal(pool.tensor(0, "w"), load_file(str(raw_files[0]))["w"])


def test_validation_happens_before_mapping(tmp_path, raw_files, monkeypatch):
    import merger.pool as pool_module

    opened = []
    monkeypatch.setattr(pool_module, "MappedFile", lambda path: opened.append(path))
    with pytest.raises(PoolError):
        CheckpointPool.open(spec_of([raw_files[0], raw_files[1], tmp_path / "missing"]))
    assert opened == []


def test_roots_are_checked_before_existence(tmp_path):
    """A path outside the roots gets the same answer whether or not it exists."""
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PoolError, match="outside the allowed roots"):
        CheckpointPool.open(spec_of([tmp_path / "no-such-file.safetensors"]), allowed_roots=[root])


def test_within_roots(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    os.symlink(tmp_path, root / "escape")
    assert within_roots(root / "data" / "tasks.jsonl", [root])
    assert within_roots(str(root / "data"), [str(tmp_path / "elsewhere"), str(root)])
    assert not within_roots(root / "escape" / "tasks.jsonl", [root])  # the link leads out
    assert not within_roots(root / ".." / "x", [root])
    assert within_roots("/anything", None)
    assert not within_roots(root / "data", [])
