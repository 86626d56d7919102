"""Bridges to other ecosystems (HF transformers, Gradio).

Each submodule imports its optional dependency itself, so ``import setr`` never pulls them in.
"""
