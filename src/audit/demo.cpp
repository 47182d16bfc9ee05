#include "rewind/audit/demo.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/data/datasets.h"
#include "rewind/io/atomic_file.h"
#include "rewind/io/manifest.h"

namespace fs = std::filesystem;

namespace rw::audit {

std::string find_demo_dir(const std::string& exe_dir) {
  return find_share_dir("demo", "REWIND_DEMO_DIR", {"demo.json"}, exe_dir);
}

DemoPaths prepare_demo(const std::string& models, const std::string& work, const ProgressFn& progress) {
  RW_CHECK(!models.empty(), Input, "the demo models were not found: set REWIND_DEMO_DIR to a folder holding demo.json, "
           "generator.pt and embedder.pt (data-tools/demo in the source tree), or reinstall rewind");
  DemoPaths d;
  d.generator = models + "/generator.pt";
  d.embedder = models + "/embedder.pt";
  d.classifier = models + "/classifier.pt";
  d.meta = models + "/demo.json";
  RW_CHECK(fs::exists(d.generator) && fs::exists(d.embedder), Input, "the demo models are missing from ", models,
           "; recreate them with data-tools/make_demo_models.sh (about 40 min on 2 cores)");
  auto meta = nlohmann::json::parse(io::read_file(d.meta));
  const int ids = meta.at("identities").get<int>(), per = meta.at("audit_per_identity").get<int>(),
            size = meta.at("size").get<int>(), refs = meta.at("reference_identities").get<int>();
  d.dataset = work + "/dataset";
  d.reference = work + "/reference";
  // a work folder made by an older demo may hold another number of images per identity
  if (fs::exists(d.dataset + "/manifest.csv") &&
      int64_t(io::read_manifest(d.dataset + "/manifest.csv").entries.size()) != int64_t(ids) * per)
    fs::remove_all(d.dataset);
  if (!fs::exists(d.dataset + "/manifest.csv")) {
    data::SynthFacesOptions o;
    o.out = d.dataset;
    o.identities = ids;
    o.per_identity = per;
    o.size = size;
    o.contact_sheet = false;
    auto r = data::synth_faces(o, progress);
    // ground truth: identities below `members` trained the demo GAN
    auto m = io::read_manifest(r.manifest);
    const int members = meta.at("member_identities").get<int>();
    for (auto& en : m.entries) en.member = std::stoi(en.identity.substr(2)) < members ? 1 : 0;
    io::write_manifest(r.manifest, m);
  }
  // a work folder made by an older demo may hold fewer reference identities than demo.json asks for
  if (fs::exists(d.reference + "/manifest.csv") &&
      int64_t(io::read_manifest(d.reference + "/manifest.csv").entries.size()) != refs)
    fs::remove_all(d.reference);
  if (!fs::exists(d.reference + "/manifest.csv")) {
    data::SynthFacesOptions o;
    o.out = d.reference;
    o.identities = refs;
    o.per_identity = 1;
    o.size = size;
    o.first_identity = meta.at("reference_first_identity").get<int>();
    o.contact_sheet = false;
    data::synth_faces(o, progress);
  }
  d.dataset += "/manifest.csv";
  d.reference += "/manifest.csv";
  return d;
}

}  // namespace rw::audit
