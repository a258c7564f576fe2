"""tvmc-mobilenet: MobileNet v1 (α, ρ) compiled through Apache TVM for edge devices."""

__version__ = "0.1.0"
