// rewind: does a trained model give away the people it was trained on?
// main() dispatches git-style subcommands and maps every exception to one line + an exit code.
#include <c10/util/Exception.h>

#include <boost/program_options/errors.hpp>
#include <iostream>
#include <opencv2/core.hpp>

#include "cli.h"
#include "rewind/core/build_info.h"
#include "rewind/core/error.h"
#include "rewind/core/runtime.h"
#include "rewind/dist/dist.h"

namespace {

using rw::cli::Args;
using rw::cli::Command;

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"data", "make datasets and manifests: synth-faces, fashion-mnist, import", rw::cli::cmd_data},
      {"train", "train rewind's own models: gan, classifier, embedder", rw::cli::cmd_train},
      {"convert", "convert third-party weights to a rewind model file: face-api", rw::cli::cmd_convert},
      {"embed", "identity embeddings of a data set (embeddings.npy + items.csv)", rw::cli::cmd_embed},
      {"generate", "sample a generator (images, latents, optional embeddings)", rw::cli::cmd_generate},
      {"invert", "GAN rewinding: recover latent codes for target images", rw::cli::cmd_invert},
#ifdef REWIND_WITH_FAISS
      {"index", "identity index over candidate datasets: build, query, info (FAISS)", rw::cli::cmd_index},
      {"membership", "membership scores and ROC metrics for a GAN (members vs non-members)", rw::cli::cmd_membership},
      {"audit", "dataset owner's report: which identities does this GAN reproduce? (no args: demo)", rw::cli::cmd_audit},
      {"compare", "both directions on the same people: GAN outputs vs split activations (no args: demo)", rw::cli::cmd_compare},
#endif
      {"split-attack", "rebuild input images from a split classifier's activations", rw::cli::cmd_split_attack},
  };
  return cmds;
}

void usage(std::ostream& os) {
  os << "rewind: does a trained model give away the people it was trained on?\n\n"
        "usage: rewind <command> [options]\n\ncommands:\n";
  for (const auto& c : commands()) os << "  " << c.name << std::string(c.name.size() < 13 ? 13 - c.name.size() : 1, ' ') << c.summary << "\n";
  os << "\n'rewind <command> --help' shows each command's options and their defaults.\n"
        "Exit codes: 0 ok, 1 internal error, 2 usage, 3 input data, 4 model, 5 torch runtime, 130 cancelled.\n";
}

int run(int argc, char** argv) {
  Args args(argv + 1, argv + argc);
  if (args.empty()) {
    usage(std::cerr);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(std::cout);
    return 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << rw::build_string() << "; " << rw::dist::mpi_description() << "\n";
    return 0;
  }
  for (const auto& c : commands())
    if (c.name == args[0]) return c.run(Args(args.begin() + 1, args.end()));
  std::cerr << "rewind: unknown command '" << args[0] << "'\n\n";
  usage(std::cerr);
  return 2;
}

}  // namespace

int guarded_main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const rw::Error& e) {
    std::cerr << "rewind: " << rw::kind_name(e.kind()) << ": " << e.message() << "\n";
    return rw::exit_code(e.kind());
  } catch (const boost::program_options::error& e) {
    std::cerr << "rewind: usage error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "rewind: torch error: " << e.what_without_backtrace() << "\n";
    return 5;
  } catch (const cv::Exception& e) {
    std::cerr << "rewind: image error: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "rewind: internal error: " << e.what() << "\n";
    return 1;
  }
}

int main(int argc, char** argv) {
  rw::install_cancel_handler();
  rw::dist::init(&argc, &argv);  // MPI builds launched by mpirun; a no-op otherwise
  const int rc = guarded_main(argc, argv);
  rw::dist::finalize();
  return rc;
}
