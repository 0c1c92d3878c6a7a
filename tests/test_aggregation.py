"""Server aggregation: per-item mean over the clients that touched each item; bad uploads rejected."""

import io

import numpy as np
import pytest

from fedras_flwr.algorithm.components import make_upload_codec
from fedras_flwr.algorithm.round_messages import UserUpload
from fedras_flwr.algorithm.server import FederatedServer
from fedras_flwr.codecs import ItemUpdate
from fedras_flwr.config import RunConfig


def server_and_codec(**changes):
    cfg = RunConfig(embedding_dim=2, codec="sparse").replace(**changes)
    server = FederatedServer(cfg, num_items=4, users=range(3))
    return server, make_upload_codec(cfg, 4, 2)


def upload(codec, user, ids, rows, examples=10):
    update = ItemUpdate(np.array(ids, dtype=np.int64), np.array(rows, dtype=np.float32))
    return UserUpload(user, codec.encode(update, 1), [], examples, 0.5, 0.0)


def test_per_item_mean_over_touching_clients():
    server, codec = server_and_codec(server_lr=1.0)
    start = server.item_table.copy()
    stats = server.aggregate([
        upload(codec, 0, [0, 1], [[1, 1], [2, 2]]),
        upload(codec, 1, [1, 2], [[4, 4], [3, 3]]),
    ], 1)
    np.testing.assert_allclose(server.item_table[0] - start[0], [1, 1], rtol=1e-6)
    np.testing.assert_allclose(server.item_table[1] - start[1], [3, 3], rtol=1e-6)  # (2 + 4) / 2
    np.testing.assert_allclose(server.item_table[2] - start[2], [3, 3], rtol=1e-6)
    assert np.array_equal(server.item_table[3], start[3])  # nobody touched item 3
    assert stats.clients == 2 and stats.rejected == 0
    # the sparse reference is the exact wire size of the sparse upload: int32 ids + float32 rows, headers included
    one_upload = sum(len(io_bytes(a)) for a in codec.encode(ItemUpdate(np.arange(2), np.ones((2, 2), np.float32)), 1))
    assert stats.uploads.mean("sparse_ref") == stats.uploads.mean("total") == one_upload


def io_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_server_decay_shrinks_only_the_updated_rows():
    """server-decay: Q[i] += server_lr * mean_i - server_decay * Q[i] for the items updated this round."""
    server, codec = server_and_codec(server_lr=1.0, server_decay=0.1)
    start = server.item_table.copy()
    server.aggregate([upload(codec, 0, [1, 2], [[1, 0], [0, 0.5]])], 1)
    np.testing.assert_allclose(server.item_table[1], 0.9 * start[1] + [1, 0], rtol=1e-6)
    np.testing.assert_allclose(server.item_table[2], 0.9 * start[2] + [0, 0.5], rtol=1e-6)
    assert np.array_equal(server.item_table[[0, 3]], start[[0, 3]])


def test_example_weighting_and_server_lr():
    server, codec = server_and_codec(server_lr=0.5, aggregation_weighting="examples")
    start = server.item_table.copy()
    server.aggregate([upload(codec, 0, [1], [[1, 0]], examples=30), upload(codec, 1, [1], [[5, 0]], examples=10)], 1)
    np.testing.assert_allclose(server.item_table[1] - start[1], [0.5 * 2.0, 0.0], atol=1e-6)


def test_a_bad_upload_is_rejected_alone():
    server, codec = server_and_codec()
    good = upload(codec, 0, [0], [[1, 1]])
    bad = UserUpload(1, [np.array([9], dtype=np.int32), np.ones((1, 2), dtype=np.float32)], [], 10, 0.5, 0.0)
    start = server.item_table.copy()
    stats = server.aggregate([bad, good], 1)
    assert stats.clients == 1 and stats.rejected == 1
    np.testing.assert_allclose(server.item_table[0] - start[0], [1, 1], rtol=1e-6)


def test_order_of_replies_does_not_matter():
    results = []
    for order in ([0, 1, 2], [2, 0, 1]):
        server, codec = server_and_codec()
        ups = [upload(codec, u, [0, 1], np.random.default_rng(u).standard_normal((2, 2))) for u in range(3)]
        server.aggregate([ups[i] for i in order], 1)
        results.append(server.item_table.copy())
    assert np.array_equal(results[0], results[1])


def test_sampling_is_seeded_and_over_users():
    server, _ = server_and_codec(clients_per_round=2)
    assert server.sample_users(3) == server.sample_users(3)
    assert len(server.sample_users(1)) == 2 and set(server.sample_users(1)) <= {0, 1, 2}


@pytest.mark.parametrize("rounds, every, expected", [(10, 5, [5, 10]), (7, 5, [5, 7]), (3, 1, [1, 2, 3])])
def test_eval_rounds(rounds, every, expected):
    server, _ = server_and_codec(num_server_rounds=rounds, eval_every=every)
    assert [r for r in range(1, rounds + 1) if server.is_eval_round(r)] == expected
