// audit::embed_stream: torch-only (no FAISS), so every build's `rewind embed` shares it.
#include <torch/torch.h>

#include "rewind/audit/stages.h"

namespace rw::audit {

Embedded embed_stream(models::Embedder& e, data::ImageStream& stream, models::Discriminator* d) {
  torch::NoGradGuard ng;
  Embedded out;
  // one buffer for all rows, filled in place: many small kept chunks interleaved with the freed
  // image batches fragment the heap (+60% peak at 80k images), and a final cat would copy it all
  auto buf = torch::empty({stream.total(), e.dim()});
  out.rows.reserve(size_t(stream.total()));
  data::Batch b;
  int64_t n = 0;
  std::vector<at::Tensor> disc;
  while (stream.next(&b)) {
    buf.slice(0, n, n + b.size()).copy_(e.embed(b.images));
    if (d) disc.push_back(d->score(b.images).to(torch::kCPU, torch::kFloat64));
    n += b.size();
    out.rows.insert(out.rows.end(), b.rows.begin(), b.rows.end());
  }
  out.emb = n == buf.size(0) ? buf : buf.slice(0, 0, n).clone();
  if (d) out.disc = disc.empty() ? torch::empty({0}, torch::kFloat64) : torch::cat(disc);
  out.skipped = stream.skipped();
  return out;
}

}  // namespace rw::audit
