"""Allocates 3 GiB at once: more than a 1 GiB booking allows."""

block = bytearray(3 * 1024**3)
print(len(block))
