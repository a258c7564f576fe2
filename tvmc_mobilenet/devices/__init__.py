"""Devices for trying remote runs without hardware: the emulated aarch64 board and TVM's tracker."""
