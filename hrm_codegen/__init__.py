"""HRM-CodeGen: the Hierarchical Reasoning Model trained to write Python."""

__version__ = "0.1.0"
