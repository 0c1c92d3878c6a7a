"""The speed-ups change no result: each fast path against the straightforward computation it replaces."""

import pickle

import faiss
import numpy as np
import pytest
from flwr.common import Context, RecordDict

from fedras_flwr.algorithm.data import load_dataset, synthetic
from fedras_flwr.algorithm.data.split import leave_one_out
from fedras_flwr.algorithm.data.synthetic import make_synthetic
from fedras_flwr.algorithm.evaluation import rank_user
from fedras_flwr.algorithm.models import MF
from fedras_flwr.algorithm.training import _epoch_batches, _NumpyMFStepper
from fedras_flwr.codecs.base import PayloadError
from fedras_flwr.codecs.kmeans import kmeans
from fedras_flwr.codecs.packing import decode_ids, decode_varints, encode_ids, encode_varints, pack_bits
from fedras_flwr.config import RunConfig
from fedras_flwr.flower.numpy_client import ContextUserStore


def same_interactions(a, b):
    return (
        np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
        and np.array_equal(a.timestamps, b.timestamps) and (a.num_users, a.num_items) == (b.num_users, b.num_items)
    )


def test_big_synthetic_sets_are_kept_on_disk_and_read_back_identical(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(synthetic, "SYNTHETIC_CACHE_MIN_PAIRS", 0)
    generated = make_synthetic(40, 300, 20, seed=2)
    first = load_dataset("synthetic", seed=2, cache_dir=str(tmp_path), synthetic_users=40, synthetic_items=300,
                         synthetic_mean_interactions=20)
    (stored,) = tmp_path.glob("synthetic-40x300-20-seed2-*.npz")
    monkeypatch.setattr(synthetic, "make_synthetic", lambda *args: 1 / 0)  # a second load must not generate
    second = load_dataset("synthetic", seed=2, cache_dir=str(tmp_path), synthetic_users=40, synthetic_items=300,
                          synthetic_mean_interactions=20)
    assert same_interactions(first, generated) and same_interactions(second, generated)
    monkeypatch.undo()
    monkeypatch.setattr(synthetic, "SYNTHETIC_CACHE_MIN_PAIRS", 0)
    stored.write_bytes(b"not a zip")
    again = synthetic.cached_synthetic(40, 300, 20, 2, str(tmp_path))
    assert same_interactions(again, generated) and "unreadable cache" in caplog.text


def reference_mf_step(params, lr, items, labels):
    """The plain SGD step the numpy MF stepper must match bit for bit: np.add.at into a table-sized
    gradient and an update of every row."""
    user, rows = params
    batch = rows[items]
    logits = batch @ user
    loss = float(np.mean(np.logaddexp(0.0, logits) - labels * logits))
    with np.errstate(over="ignore"):
        error = (1.0 / (1.0 + np.exp(-logits)) - labels) / len(items)
    grad_rows = np.zeros_like(rows)
    np.add.at(grad_rows, items, error[:, None] * user[None, :])
    user -= (lr * (batch.T @ error)).astype(np.float32)
    rows -= (lr * grad_rows).astype(np.float32)
    return loss


@pytest.mark.parametrize("seed", range(4))
def test_sparse_sgd_steps_equal_the_full_table_update(seed):
    rng = np.random.default_rng(seed)
    num_rows, dim, size = 40, 8, 16
    user = rng.standard_normal(dim).astype(np.float32)
    rows = (rng.standard_normal((num_rows, dim)) * 10.0 ** rng.integers(-3, 3, (num_rows, 1))).astype(np.float32)
    items = rng.integers(0, num_rows // 4 if seed % 2 else num_rows, size=100)  # many repeats per batch
    labels = (rng.random(100) < 0.3).astype(np.float32)
    stepper = _NumpyMFStepper(RunConfig(lr=4.0, embedding_dim=dim), user, rows)
    reference = [user.copy(), rows.copy()]
    assert stepper.sparse
    with np.errstate(over="ignore"):  # as train_user runs the stepper
        for batch in _epoch_batches(items, labels, size, num_rows, dim):
            assert stepper.step(batch) == reference_mf_step(reference, 4.0, batch.items, batch.labels)
    user_vector, delta, _ = stepper.result()
    for fast, slow in zip([user_vector, delta], [reference[0], reference[1] - rows]):
        assert np.array_equal(fast.view(np.int32), slow.view(np.int32))


def test_epoch_batches_list_each_batch_rows_once():
    items = np.array([3, 1, 3, 3, 0, 1, 2, 2, 2])
    batches = _epoch_batches(items, np.zeros(9, np.float32), 4, 5, 2)
    assert [b.items.tolist() for b in batches] == [[3, 1, 3, 3], [0, 1, 2, 2], [2]]
    assert [b.rows.tolist() for b in batches] == [[1, 3], [0, 1, 2], [2]]
    assert batches[0].slots.tolist() == [2, 3, 0, 1, 2, 3, 2, 3]  # row 3 is the 2nd distinct row: entries 2, 3


def reference_kmeans(x, k, iterations, seed):
    """faiss's own wrapper for the same k-means (our direct Clustering call skips its Python statistics)."""
    model = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, verbose=False,
                         min_points_per_centroid=1, max_points_per_centroid=1 << 30,
                         init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS)
    model.train(x)
    return model.centroids, model.index.search(x, 1)[1][:, 0]


@pytest.mark.parametrize("k", [2, 8, 40])
def test_kmeans_equals_faiss_kmeans(k):  # L2 rows only: faiss.Kmeans scores unit rows by inner product, we by L2
    rng = np.random.default_rng(k)
    x = (rng.standard_normal((300, 16)) * 1e-2).astype(np.float32)
    x[:60] = x[0]  # repeated rows: clusters can empty out and get split
    ours = kmeans(x, k, 20, seed=5)
    centroids, assignment = reference_kmeans(x, k, 20, 5)
    assert np.array_equal(ours.centroids.view(np.int32), centroids.view(np.int32))
    assert np.array_equal(ours.assignment, assignment) and ours.assignment.dtype == np.int64


def reference_varints(values):
    out = bytearray()
    for value in values.tolist():
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def reference_pack_bits(values, bits):
    as_bits = (values.astype(np.uint64)[:, None] >> np.arange(bits, dtype=np.uint64)) & 1
    return np.packbits(as_bits.astype(np.uint8).ravel(), bitorder="little")


def test_vectorised_varints_and_bit_packing():
    rng = np.random.default_rng(0)
    edges = np.array([0, 1, 127, 128, 16383, 16384, 2**35, 2**63 - 1], dtype=np.int64)
    assert encode_varints(edges) == reference_varints(edges) and encode_varints(edges[:0]) == b""
    for _ in range(300):
        gaps = rng.integers(0, 2 ** int(rng.integers(1, 30)), size=int(rng.integers(1, 400)))
        assert encode_varints(gaps) == reference_varints(gaps)
        bits = int(rng.integers(1, 13))
        values = rng.integers(0, 1 << bits, size=int(rng.integers(1, 300)))
        assert np.array_equal(pack_bits(values, bits), reference_pack_bits(values, bits))


def reference_decode_varints(blob, count=None):
    """The byte-at-a-time LEB128 loop the vectorised decoder replaced (at most 9 bytes per value)."""
    values, current, shift, read = [], 0, 0, 0
    for read, byte in enumerate(blob, start=1):
        current |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise PayloadError("varint too long")
        if byte < 0x80:
            values.append(current)
            current, shift = 0, 0
            if len(values) == count:
                break
    if shift or (count is not None and len(values) < count):
        raise PayloadError("truncated varint")
    return values, read


def outcome(decode, blob, count):
    try:
        values, read = decode(blob, count)
        return [int(v) for v in values], read
    except PayloadError:
        return "error"


def test_vectorised_varint_decoding_equals_the_byte_loop():
    rng = np.random.default_rng(1)
    edges = np.array([0, 1, 127, 128, 16383, 16384, 2**35, 2**63 - 1], dtype=np.int64)
    blob = np.frombuffer(encode_varints(edges), np.uint8)
    assert decode_varints(blob)[0].tolist() == edges.tolist() and decode_varints(blob)[1] == len(blob)
    assert decode_varints(blob, 3)[0].tolist() == [0, 1, 127] and decode_varints(blob, 3)[1] == 3
    cases = [b"", b"\x80", b"\x81\x01\x80", b"\xff" * 9 + b"\x01", b"\xff" * 8 + b"\x7f", b"\x05\x80\x80"]
    cases += [bytes(rng.integers(0, 256, size=int(rng.integers(1, 40)), dtype=np.uint8)) for _ in range(400)]
    for case in cases:
        for count in (None, 1, 2, 5):  # callers ask for at least one value
            blob = np.frombuffer(case, np.uint8)
            assert outcome(decode_varints, blob, count) == outcome(reference_decode_varints, case, count), (case, count)


@pytest.mark.parametrize("count", [0, 1, 50, 125, 126, 400, 999])
def test_id_encoding_picks_the_smaller_form(count):
    ids = np.sort(np.random.default_rng(count).choice(1000, count, replace=False)).astype(np.int64)
    blob = encode_ids(ids, 1000)
    as_deltas = 1 + len(reference_varints(np.diff(ids, prepend=-1) - 1))
    assert len(blob) == min(1 + 125, as_deltas) and np.array_equal(decode_ids(blob, 1000), ids)


def test_full_ranking_counts_equal_the_masked_count():
    split = leave_one_out(make_synthetic(30, 300, 20, seed=4), seed=0)
    table = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    table[:40] = table[40]  # ties with the held-out items
    for user in split.users:
        vector = np.random.default_rng(user.user).standard_normal(8).astype(np.float32)
        ranks = rank_user(MF(8), user, vector, table, [])
        scores = table @ vector
        candidates = np.ones(300, dtype=bool)
        candidates[user.all_positives] = False
        assert ranks.test_full == np.count_nonzero(scores[candidates] >= scores[user.test_item])
        assert ranks.val_full == np.count_nonzero(scores[candidates] >= scores[user.val_item])


def test_node_state_keeps_arrays_exactly_across_messages():
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    arrays = {
        "user/3/vector": np.random.default_rng(0).standard_normal(8).astype(np.float32),
        "user/3/residual-ids": np.array([2, 7, 11], dtype=np.int64),
        "user/3/residual-rows": np.arange(6, dtype=np.float32).reshape(3, 2),
        "node/table-version": np.array([4], dtype=np.int64),
    }
    store = ContextUserStore(context)
    for key, array in arrays.items():
        store.put(key, array)
    shipped = ContextUserStore(pickle.loads(pickle.dumps(context)))  # as the simulation moves a context
    for key, array in arrays.items():
        back = shipped.get(key)
        assert back.dtype == array.dtype and back.shape == array.shape and np.array_equal(back, array)
        back += 1  # a writable copy, not a view of the stored bytes
    assert np.array_equal(shipped.get("user/3/residual-ids"), arrays["user/3/residual-ids"])
    assert shipped.get("user/4/vector") is None
