#!/usr/bin/env python3
"""Makes a copy of torch-sys 0.26's C++ wrapper compile against an older libtorch (the GPU
kit's 2.11): the few generated wrappers of operators that the older libtorch lacks (or
declares with other arguments) throw "not in this libtorch" instead of calling them.
difflow uses none of them.

    python scripts/torch_sys_compat.py TORCH_SYS_COPY
"""

import re
import sys

# Operators that tch 0.26 wraps (generated from PyTorch 2.13) and torch 2.11 does not have
# with the same signature; found by compiling the wrapper against the 2.11 headers.
MISSING = [
    "_flash_attention_forward_no_dropout_inplace",
    "_philox_key_fold_in", "_philox_key_split",
    "_philox_normal", "_philox_normal_", "_philox_normal_out",
    "_philox_uniform", "_philox_uniform_", "_philox_uniform_out",
    "_upsample_lanczos2d_aa", "_upsample_lanczos2d_aa_backward",
    "_upsample_lanczos2d_aa_backward_out", "_upsample_lanczos2d_aa_out",
    "_scaled_dot_product_attention_math_for_mps",
]


def main():
    path = f"{sys.argv[1]}/libtch/torch_api_generated.cpp"
    text = open(path).read()
    calls = re.compile(r"torch::(" + "|".join(re.escape(n) for n in MISSING) + r")\(")
    # Each wrapper is `void atg_…(…) {\n  PROTECT(\n …\n  )\n}`; replace the bodies that call a missing op.
    pattern = re.compile(r"(\n(?:void|tensor|int\w*|double|bool) atg_\w+\([^)]*\) \{\n  PROTECT\()(.*?)(\n  \)\n\})", re.S)
    replaced = []

    def stub(m):
        call = calls.search(m.group(2))
        if not call:
            return m.group(0)
        replaced.append(call.group(1))
        return f'{m.group(1)}\n    throw std::runtime_error("{call.group(1)} is not in this libtorch");{m.group(3)}'

    text = pattern.sub(stub, text)
    missing = sorted(set(MISSING) - set(replaced))
    if missing:
        raise SystemExit(f"no wrapper found for {missing}: is this torch-sys 0.26?")
    open(path, "w").write(text)
    print(f"stubbed {len(replaced)} wrappers of operators missing from the older libtorch")


if __name__ == "__main__":
    main()
