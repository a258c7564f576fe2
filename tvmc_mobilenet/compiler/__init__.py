"""From a model to kernels: frontends (PyTorch, ONNX), the network source, passes, kernel tasks and
the GPU-code packer. Below ``tuning/``; the build that uses both is ``tvmc_mobilenet/build.py``."""
