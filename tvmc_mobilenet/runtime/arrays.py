"""Host arrays the TVM runtime can read in place.

TVM takes a NumPy array without copying it (DLPack) only when its data starts on a 64-byte
boundary (``FromDLPack: Data is not aligned to 64 bytes``), is C-contiguous and writeable;
NumPy's own allocations start on 16 bytes. Arrays the tool reads (an artifact's reference input,
``run --input``) are put on that boundary once, so every run reads them in place.
"""

from __future__ import annotations

import numpy as np

#: The alignment TVM's runtime requires of a tensor's data (``kAllocAlignment``).
TVM_ALIGNMENT = 64


def readable_in_place(array: np.ndarray) -> bool:
    """Whether TVM can take ``array`` as a tensor without copying it."""
    flags = array.flags
    return bool(flags.c_contiguous and flags.writeable and array.ctypes.data % TVM_ALIGNMENT == 0 and array.size)


def aligned(array: np.ndarray) -> np.ndarray:
    """``array`` itself where TVM can read it in place, else a copy that it can."""
    if readable_in_place(array):
        return array
    raw = np.empty(array.nbytes + TVM_ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % TVM_ALIGNMENT
    out = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out
