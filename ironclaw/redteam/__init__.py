"""The red-team harness: attack a live sandbox from inside and prove the wall holds.

Not part of the control plane: nothing in ``ironclaw.host`` imports it. It drives a
real control plane from outside, like an operator would, plus a toolkit it binds into
the sandbox. ``ironctl redteam`` is its command line.
"""
