"""The local lab: a real control plane and sandboxed worker hosts.

See README "What the tests run against" for what is real and what stands in.
"""
