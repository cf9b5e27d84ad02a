"""The operations of LLM OS, one module each, called by both the pages and the CLI.

A page lays out widgets and calls one function here per action; a CLI command parses its flags and
calls the same function. Results are dataclasses, not dicts, so both sides read the same fields.
"""
