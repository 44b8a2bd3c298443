"""Helpers of bench/codemode.py: the generated tool catalogue and the gateway / client / token plumbing."""
