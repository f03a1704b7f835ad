// The `sluice` executable: everything is in sluice::cli (service/cli).
#include "service/cli/cli.hpp"

int main(int argc, char** argv) { return sluice::cli::Main(argc, argv); }
