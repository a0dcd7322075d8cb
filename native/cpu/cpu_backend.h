#pragma once

#include <memory>

#include "../backend.h"

namespace greta {

// fp64 = false: fp32 activations and accumulation ("cpu").
// fp64 = true: the same ops in double, used as the oracle ("cpu-fp64").
std::shared_ptr<Backend> make_cpu_backend(bool fp64);

}  // namespace greta
