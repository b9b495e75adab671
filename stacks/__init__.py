"""Stacks compose constructs; they hold no resource details of their own."""
