"""Files copied verbatim into an exported Hugging Face folder (see hrm_codegen/export/__init__.py).

They import their siblings relatively (`from .hrm_codegen_hrm import ...`), and those siblings exist
only in an exported folder, so nothing here is meant to be imported from this package.
"""
