// IVF identity indexes built in shards (FAISS's recipe for indexes larger than one machine):
//   1. the coarse quantizer (and PQ) is trained once, on a sample: ivf_train writes the empty,
//      trained index (a small file every shard reads);
//   2. each shard adds its vectors to a copy of it, under keys of its own choosing (rewind uses
//      the manifest row): ivf_add_shard writes the shard's index file;
//   3. IdentityIndex::merge_ivf_shards merges the shards' inverted lists in id order, into memory
//      or into a lists file beside index.faiss that queries memory-map (OnDiskInvertedLists), so a
//      query process holds the quantizer, the ids' direct map and the pages it touches, not the
//      codes.
// Vectors are [n, d] float32 L2-normalised embeddings, keys [n] int64; similarities are cosine as
// everywhere in rewind. FAISS stays in src/identity.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "rewind/identity/index.h"

namespace rw::identity {

/// The number of lists of an IVF factory string (IVF4096,PQ32 -> 4096; OPQ16,IVF1024,PQ16 ->
/// 1024). Error{kUsage} for a factory FAISS rejects or one that is not IVF.
int64_t ivf_nlist(const std::string& factory, int64_t dim, const std::string& metric = "cosine");

/// How many vectors to train on: `requested` when > 0, else 64 per list (FAISS asks for at least
/// 39 and uses at most 256), never more than `available`.
int64_t ivf_train_sample_size(int64_t nlist, int64_t available, int64_t requested);

/// Trains `options.factory` (an IVF factory) with `options.metric` on `sample` [n, d], seeded by
/// options.seed, and writes the empty trained index to `path` atomically. Error{kUsage} for a
/// factory that is not IVF, Error{kInput} for fewer sample vectors than lists or broken vectors.
void ivf_train(const IndexOptions& options, const at::Tensor& sample, const std::string& path);

/// Adds `vectors` [n, d] under `keys` [n] (ascending) to a copy of the trained index at
/// `trained` and writes the shard's index to `path` atomically.
void ivf_add_shard(const std::string& trained, const at::Tensor& vectors, const at::Tensor& keys,
                   const std::string& path);

}  // namespace rw::identity
