"""Devices for trying remote runs without hardware: the emulated aarch64 board and TVM's tracker
(``emulated``), and their foreground lifecycle, stopped with the command that started them (``serve``)."""
