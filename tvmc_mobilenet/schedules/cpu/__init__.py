"""Default schedules for CPUs (x86 and ARM, through LLVM)."""
