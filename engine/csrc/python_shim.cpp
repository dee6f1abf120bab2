// Tensors across the worker's embedded Python: a libtorch tensor as a Python torch.Tensor
// and back, sharing the TensorImpl. A shared library of its own (libdifflow_python.so),
// loaded only when a `python` model is built: it links libtorch_python, which loads
// libtorch and with it the CUDA libraries, a cost every other stage must not pay.
// The Python symbols come from the worker's libpython; call with the GIL held.
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdlib>
#include <cstring>
#include <exception>

extern "C" {

// A new reference to `t` as a torch.Tensor; nullptr with `*error` set on failure.
PyObject* dfl_python_wrap(const at::Tensor* t, char** error) {
  try {
    return THPVariable_Wrap(*t);
  } catch (const std::exception& e) {
    *error = strdup(e.what());
  }
  return nullptr;
}

// A new at::Tensor (the caller owns it) for a torch.Tensor; nullptr when `object` is
// something else, or with `*error` set on failure.
at::Tensor* dfl_python_unpack(PyObject* object, char** error) {
  try {
    if (!THPVariable_Check(object)) {
      return nullptr;
    }
    return new at::Tensor(THPVariable_Unpack(object));
  } catch (const std::exception& e) {
    *error = strdup(e.what());
  }
  return nullptr;
}

void dfl_python_free_error(char* error) { free(error); }
}
