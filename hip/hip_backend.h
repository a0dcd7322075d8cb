// Entry points of the HIP backend for the addon; plain C++, no HIP types, so
// the N-API glue compiles with the host compiler.
#pragma once

#include <memory>

#include "../native/backend.h"

namespace greta {

// Throws GretaError("ENODEV") when no GPU answers.
std::shared_ptr<Backend> make_hip_backend(int device);
// 0 when the runtime finds no device (or no driver).
int hip_device_count();

}  // namespace greta
