// Turning C++ exceptions into messages at the C boundary, for every shim the engine
// builds: an entry point returns null on success or a malloc'ed message that the Rust
// side reads and frees.
#pragma once

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace difflow {

inline char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) std::memcpy(out, message.c_str(), message.size() + 1);
  return out;
}

// Runs body; null on success, else the exception's message. `unknown` names the shim in
// the message of an exception that is not a std::exception.
template <typename F>
char* guarded_in(const char* unknown, F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message(std::string("unknown C++ exception in ") + unknown);
  }
}

}  // namespace difflow
