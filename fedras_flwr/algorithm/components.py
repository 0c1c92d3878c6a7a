"""The run's algorithm parts, built from its config in one place so that both ends of every wire
agree: the model, the upload codec, the dense-weights codec and the byte references."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedras_flwr.algorithm.models import Backbone, make_backbone
from fedras_flwr.codecs import Codec, CodecContext, WeightsCodec, make_codec, shaped_size, wire_bytes
from fedras_flwr.config import RunConfig


def make_model(cfg: RunConfig) -> Backbone:
    return make_backbone(cfg.model, cfg.embedding_dim, cfg.mlp_layer_sizes)


def make_upload_codec(cfg: RunConfig, num_items: int, dim: int) -> Codec:
    """The run's codec from its own parameters. An adaptive policy may pick any candidate K, so the
    server accepts up to the largest one."""
    adaptive_limit = max(cfg.k_candidate_list) if cfg.k_policy != "fixed" else 0
    context = CodecContext(num_items, dim, seed=cfg.seed, max_actions=adaptive_limit)
    return make_codec(cfg.codec, context, cfg.codec_params())


def make_weights_codec(cfg: RunConfig, backbone: Backbone) -> WeightsCodec:
    return WeightsCodec(cfg.effective_dense_upload, [w.shape for w in backbone.init_dense(np.random.default_rng(0))])


@dataclass(frozen=True)
class ByteReferences:
    """Exact wire sizes of the two reference uploads, serialized like every upload (.npy headers
    included) at the reference embedding size: `dense` = the full float32 item table + the float32
    dense weights (FedMF / FedAvg); `sparse(rows)` = int32 ids + float32 touched rows + the float32
    dense weights (the lossless baseline). A dense run is thus 0.00 % below `dense`, a sparse run 0.00 %
    below `sparse`."""

    num_items: int
    item_dim: int
    weights: int  # bytes of the float32 dense weights (0 for MF)

    @classmethod
    def for_run(cls, cfg: RunConfig, num_items: int) -> "ByteReferences":
        backbone = make_backbone(cfg.model, cfg.reference_dim, cfg.mlp_layer_sizes)
        return cls(num_items, backbone.item_dim, wire_bytes(backbone.init_dense(np.random.default_rng(0))))

    @property
    def dense(self) -> int:
        return shaped_size((self.num_items, self.item_dim), np.float32) + self.weights

    def sparse(self, rows: int) -> int:
        return shaped_size((rows,), np.int32) + shaped_size((rows, self.item_dim), np.float32) + self.weights


def own_dense_upload(cfg: RunConfig, num_items: int) -> int:
    """What a user of this run sends uncompressed: the dense reference at the run's own embedding size
    (the references may use a larger one, `reference-embedding-dim`)."""
    return ByteReferences.for_run(cfg.replace(reference_embedding_dim=0), num_items).dense


@dataclass(frozen=True)
class RunComponents:
    """What the user side and the server both build for a run: they must agree on every one."""

    backbone: Backbone
    codec: Codec
    weights_codec: WeightsCodec
    references: ByteReferences
    own_dense_upload: int

    @classmethod
    def build(cls, cfg: RunConfig, num_items: int) -> "RunComponents":
        backbone = make_model(cfg)
        return cls(
            backbone,
            make_upload_codec(cfg, num_items, backbone.item_dim),
            make_weights_codec(cfg, backbone),
            ByteReferences.for_run(cfg, num_items),
            own_dense_upload(cfg, num_items),
        )
