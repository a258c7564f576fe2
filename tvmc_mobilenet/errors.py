"""The one exception hierarchy of the tool.

The CLI turns any :class:`TvmcMobilenetError` into one line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback. A message says what was wrong, what was expected
and, where there is one, what to do.
"""


class TvmcMobilenetError(Exception):
    """Base of every error a user can cause or fix."""

    exit_code = 1


class BadInputError(TvmcMobilenetError):
    """An option, file or value the user gave is not acceptable."""

    exit_code = 2


class TargetError(TvmcMobilenetError):
    """The target is unknown, unsupported here, or its toolchain is missing."""

    exit_code = 3


class ArtifactError(TvmcMobilenetError):
    """An artifact is missing, corrupt, not ours, or fails its integrity check."""

    exit_code = 4


class VerificationError(TvmcMobilenetError):
    """A compiled module disagrees with the PyTorch reference."""

    exit_code = 5


class RpcError(TvmcMobilenetError):
    """A remote device, server or tracker could not be reached or failed mid-run."""

    exit_code = 6


class TuningError(TvmcMobilenetError):
    """Tuning could not start or its database is unusable."""

    exit_code = 7


class TuningInterrupted(TuningError):
    """Ctrl-C during a tune: the records measured so far are kept and the report is written."""

    exit_code = 130

    def __init__(self, message: str, result=None):
        super().__init__(message)
        #: The tune's :class:`~tvmc_mobilenet.tuning.tune.TuneResult` up to the interruption.
        self.result = result


class CudaCompileError(TargetError):
    """The GPU compiler (nvcc, or CUDA 11.8's NVRTC) rejected the kernels, or a built module is not
    in the layout the GPU-code packer expects."""


def message_line(exc: BaseException, which: int = -1, limit: int = 300) -> str:
    """One non-empty line of an exception's message, for a one-line error: by default the last
    (where TVM's errors put the reason, after their traceback), ``which=0`` the first."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[which][:limit] if lines else type(exc).__name__
